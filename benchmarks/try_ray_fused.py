"""Experiment: one streaming Ray Data pipeline (prepare tasks feeding the embedding actors).

``qa.distributed.RayMapper`` runs two datasets one after the other: prepare (``map_batches``
tasks) and then embed (an actor pool, one model load per actor). The driver needs every
prepared document before it knows which chunk keys are new, so the actors start only after
the prepare stage, and on a build of ~1,300 chunks their start is a large share of the time
(README, Scale). This script measures the alternative: one dataset, prepare tasks ->
embedding actors, so the actors boot and load the model while documents are parsed; the
vectors are kept by the mapper and handed to the build when it asks for them (keys the
previous generation holds are skipped by the actors; documents of more than 128 chunks are
left to the ordinary embed stage, so big files still spread over all actors).

Method: the SQuAD paragraphs of ``benchmarks/distributed.py`` (1,048 .txt files), each build in
a fresh process from nothing to a live generation, timed as there; ``local``, ``ray`` (qa's
RayMapper) and ``fused`` (this prototype) interleaved for ``--rounds`` rounds on a one-node
cluster (``ray start --head --num-cpus 2``, 127.0.0.1). The chunks and vectors of the fused
build are compared with the local one.

Run: python benchmarks/try_ray_fused.py [--rounds 3]   (~6 min here);
results in benchmarks/results/ray_fused.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
from distributed import write_corpus

MARK = "RESULT-JSON: "
MAX_DOC_CHUNKS = 128
DOCS_PER_BATCH = 64


class _PrepareAndEmbed:
    """Ray actor: embeds the new chunks of a batch of prepared documents, rows passed through."""

    def __init__(self, spec: Any, known: frozenset[bytes]) -> None:
        from qa.distributed import _load

        self.embedder = _load(spec)
        self.embedder.encode(["load the model now"])
        self.known = known

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        n = len(batch["id"])
        texts: list[str] = []
        units: list[list[tuple[int, int]]] = []
        owner: list[int] = []
        seen: set[bytes] = set()
        keys_of: list[bytes] = [b""] * n
        for i in range(n):
            spans = np.frombuffer(batch["spans"][i], np.int64).reshape(-1, 2)
            if not batch["ok"][i] or len(spans) > MAX_DOC_CHUNKS:
                continue
            counts = np.frombuffer(batch["unit_counts"][i], np.int64)
            all_units = np.frombuffer(batch["units"][i], np.int64).reshape(-1, 2)
            keys, text = bytes(batch["keys"][i]), str(batch["text"][i])
            at, mine = 0, []
            for c, ((start, end), k) in enumerate(zip(spans, counts, strict=True)):
                key = keys[16 * c : 16 * c + 16]
                rel = [(int(a) - start, int(b) - start) for a, b in all_units[at : at + k]]
                at += k
                if key in self.known or key in seen:
                    continue
                seen.add(key)
                mine.append(key)
                texts.append(text[start:end])
                units.append(rel)
                owner.append(i)
            keys_of[i] = b"".join(mine)
        vectors: list[list[bytes]] = [[] for _ in range(n)]
        unit_vectors: list[list[bytes]] = [[] for _ in range(n)]
        if texts:
            vecs, unit_vecs = self.embedder.encode_chunks(texts, units)
            for j, i in enumerate(owner):
                vectors[i].append(np.asarray(vecs[j], np.float32).tobytes())
                unit_vectors[i].append(np.asarray(unit_vecs[j], np.float16).tobytes())
        out: dict[str, list[Any]] = {k: list(v) for k, v in batch.items()}
        out["vector_keys"] = keys_of
        out["vectors"] = [b"".join(v) for v in vectors]
        out["unit_vectors"] = [b"".join(u) for u in unit_vectors]
        return out


def fused_mapper(address: str) -> Any:
    from qa.distributed import (
        FILES_PER_BATCH,
        RayMapper,
        _cluster_errors,
        _map_batches,
        _prepare_batch,
        _prepared_from_row,
        spec_of,
    )

    class FusedMapper(RayMapper):
        def __init__(self) -> None:
            super().__init__(address)
            self.stash: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
            self.known: frozenset[bytes] = frozenset()  # full builds here: nothing is known

        def prepare(self, tasks: Sequence[Any], config: Any, embedder: Any) -> Iterator[Any]:
            if not tasks:
                return
            import ray

            self.connect()
            spec = spec_of(embedder)
            self.check(spec)
            rows = [{"id": t.id, "path": t.path, "size": t.size} for t in tasks]
            ds: Any = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // FILES_PER_BATCH)))
            ds = _map_batches(ds, _prepare_batch, batch_size=FILES_PER_BATCH, batch_format="numpy",
                              fn_kwargs={"config": config, "spec": spec}, num_cpus=0, concurrency=self.cpus,
                              max_retries=self.retries)  # fmt: skip
            ds = _map_batches(ds, _PrepareAndEmbed, batch_size=DOCS_PER_BATCH, batch_format="numpy",
                              fn_constructor_kwargs={"spec": spec, "known": self.known},
                              compute=ray.data.ActorPoolStrategy(size=self.cpus), num_cpus=1,
                              max_restarts=self.retries, max_task_retries=self.retries)  # fmt: skip
            dim = embedder.dimension
            with _cluster_errors("preparing documents"):
                for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
                    for row in batch.to_dict("records"):
                        prepared = _prepared_from_row(row)
                        keys = row["vector_keys"]
                        if keys:
                            units_of = {
                                k: len(c.units) for k, c in zip(prepared.keys, prepared.chunks, strict=True)
                            }
                            vecs = np.frombuffer(row["vectors"], np.float32).reshape(-1, dim)
                            unit_vecs = np.frombuffer(row["unit_vectors"], np.float16).reshape(-1, dim)
                            at = 0
                            for c in range(len(keys) // 16):
                                key = keys[16 * c : 16 * c + 16]
                                self.stash[key] = (vecs[c], unit_vecs[at : at + units_of[key]])
                                at += units_of[key]
                        yield prepared

        def embed(
            self, items: Sequence[Any], embedder: Any, progress: Callable[[int, int], None]
        ) -> Iterator[Any]:
            have = [it for it in items if it.key in self.stash]
            rest = [it for it in items if it.key not in self.stash]
            if have:
                progress(len(have), len(items))
                yield ([it.key for it in have], np.vstack([self.stash[it.key][0] for it in have]),
                       [self.stash[it.key][1] for it in have])  # fmt: skip
            if rest:
                yield from super().embed(rest, embedder, lambda d, t: progress(len(have) + d, len(items)))

    return FusedMapper()


def worker(config: str, corpus: Path, index: Path, address: str) -> dict[str, Any]:
    import qa
    from qa.distributed import RayMapper

    settings = qa.Settings(corpus=corpus, index=index)
    t0 = time.perf_counter()
    if config == "local":
        report = qa.build_index(settings=settings, full=True)
    else:
        with RayMapper(address) if config == "ray" else fused_mapper(address) as mapper:
            report = qa.build_index(settings=settings, full=True, mapper=mapper)
    seconds = time.perf_counter() - t0
    return {"config": config, "build_s": round(seconds, 2), "chunks": report.chunks,
            "chunks_per_s": round(report.chunks / seconds, 2),
            "stages_s": {k: round(v, 2) for k, v in report.seconds.items()}}  # fmt: skip


def compare(local: Path, other: Path) -> dict[str, Any]:
    from qa import store

    a, _ = store.open_live(local, None)
    b, _ = store.open_live(other, None)
    same = bool(np.array_equal(a.chunks, b.chunks) and np.array_equal(a.chunk_keys, b.chunk_keys))
    cos = np.sum(np.asarray(a.vectors) * np.asarray(b.vectors), axis=1) if same else np.zeros(1)
    a.close()
    b.close()
    return {"same_chunks": same, "min_cosine": float(cos.min())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa-dist"))
    ap.add_argument("--worker", choices=("local", "ray", "fused"), help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--address", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(MARK + json.dumps(worker(args.worker, args.corpus, args.index, args.address)), flush=True)
        return
    sys.path.insert(0, str(common.ROOT))
    from tests.helpers.ray_cluster import start_cluster

    load_before = common.loadavg()
    corpus = write_corpus(args.work / "corpus")
    cluster = start_cluster(1, cpus=2)
    runs: list[dict[str, Any]] = []
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
        for _ in range(args.rounds):
            for config in ("local", "ray", "fused"):
                index = args.work / f"try-{config}"
                shutil.rmtree(index, ignore_errors=True)
                load = common.loadavg()
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", config, "--corpus", str(corpus), "--index",
                     str(index), "--address", cluster.address],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"{config} failed ({proc.returncode}): {proc.stderr[-2000:]}")
                run = {**json.loads(lines[-1][len(MARK) :]), "load_before": load}
                print(f"  {config}: {run['build_s']} s", file=sys.stderr, flush=True)
                runs.append(run)
    finally:
        cluster.stop()
    local = statistics.median(r["build_s"] for r in runs if r["config"] == "local")
    summary = {}
    for config in ("local", "ray", "fused"):
        median = statistics.median(r["build_s"] for r in runs if r["config"] == config)
        summary[config] = {"build_s_median": median, "vs_local": round(local / median, 3)}
    summary["fused"]["equality"] = compare(args.work / "try-local", args.work / "try-fused")
    print(json.dumps(summary, indent=1))
    path = common.save("ray_fused", False, {"method": __doc__, "runs": runs, "summary": summary}, load_before)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
