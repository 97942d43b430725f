"""Local build vs Ray builds of the SQuAD paragraphs: throughput, overhead, identical answers.

Method:
1. The 1,048 SQuAD dev paragraphs (first 24 articles) are written as .txt files once.
2. Each build runs in a fresh Python process, from nothing (``full=True``, empty index) to a
   live generation, timed from before the model is loaded to ``build_index`` returning, so the
   local build pays its model load as the Ray actors pay theirs:
   - ``local``: ``qa.build_index`` in-process (2 torch threads, the default);
   - ``ray-1node``: ``RayMapper`` joining a running one-node cluster (``ray start --head
     --num-cpus 2``: two embedding actors, one thread each);
   - ``ray-2nodes``: the same on a loopback cluster of two nodes with 1 CPU each
     (``tests/helpers/ray_cluster.py``: both on 127.0.0.1, token authentication);
   - ``ray-auto``: ``RayMapper("auto")``, i.e. ``qa index --ray auto``: starting the local Ray
     instance is part of the time.
   Runs are interleaved (local, ray-1node, ray-2nodes, ray-auto, then again), because other
   work shares this machine; the load average is recorded before and after each run.
3. Throughput = chunks / build seconds; overhead = 1 - ray / local (medians).
4. Equality: chunks, keys and offsets of each Ray index vs the local one, the minimum cosine
   between their vectors, and the answers (text and quote offsets) to ``--questions`` SQuAD
   questions asked of both.

Precision: builds use ``build_precision`` auto (bfloat16 on a CPU with AVX512-BF16, else
float32); the results file records the CPU flags.

``--source scifact`` builds the 5,183 SciFact abstracts instead (about 5x the chunks), to
measure how Ray's fixed costs (worker start, one model load per actor) amortise with size;
results go to ``distributed-scifact.json``.

Run: python benchmarks/distributed.py [--rounds 2] [--questions 200] [--source squad|scifact]
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

MARK = "RESULT-JSON: "
CONFIGS = ("local", "ray-1node", "ray-2nodes", "ray-auto")


def write_corpus(folder: Path, source: str = "squad") -> Path:
    """The benchmark's documents as .txt files, written once: the SQuAD paragraphs, or the
    5,183 SciFact abstracts (a build ~5x larger, to see how Ray's fixed costs amortise)."""
    if folder.is_dir() and len(list(folder.iterdir())) > 1000:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if source == "scifact":
        from qa.evaluation import load_beir

        docs = load_beir(common.SCIFACT)[0]
    else:
        from qa.evaluation import load_squad

        docs = load_squad(common.SQUAD)[0]
    for doc, text in docs.items():
        (folder / (doc if doc.endswith(".txt") else f"{doc}.txt")).write_text(text, encoding="utf-8")
    return folder


def worker(config: str, corpus: Path, index: Path, address: str) -> dict[str, Any]:
    """One build in this fresh process (model loading included in the time)."""
    t0 = time.perf_counter()
    import qa
    from qa.distributed import RayMapper

    settings = qa.Settings(corpus=corpus, index=index)
    t_import = time.perf_counter()
    if config == "local":
        report = qa.build_index(settings=settings, full=True)
    else:
        with RayMapper("auto" if config == "ray-auto" else address) as mapper:
            report = qa.build_index(settings=settings, full=True, mapper=mapper)
    t_end = time.perf_counter()
    return {
        "chunks": report.chunks,
        "documents": len(report.added),
        "engine": report.engine,
        "build_s": round(t_end - t_import, 2),
        "import_s": round(t_import - t0, 2),
        "stages_s": {k: round(v, 2) for k, v in report.seconds.items()},
        "chunks_per_s": round(report.chunks / (t_end - t_import), 2),
    }


def run(config: str, corpus: Path, index: Path, address: str, env: dict[str, str]) -> dict[str, Any]:
    shutil.rmtree(index, ignore_errors=True)
    load = common.loadavg()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", config, "--corpus", str(corpus), "--index", str(index),
         "--address", address],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{config} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    result.update(config=config, load_before=load, load_after=common.loadavg())
    print(f"  {config}: {result['chunks_per_s']} chunks/s, {result['build_s']} s (load {load})",
          file=sys.stderr, flush=True)  # fmt: skip
    return result


def compare(local: Path, other: Path, questions: list[str]) -> dict[str, Any]:
    import numpy as np

    import qa
    from qa import store

    a, _ = store.open_live(local, None)
    b, _ = store.open_live(other, None)
    same_chunks = bool(np.array_equal(a.chunks, b.chunks) and np.array_equal(a.chunk_keys, b.chunk_keys))
    cos = np.sum(np.asarray(a.vectors) * np.asarray(b.vectors), axis=1) if same_chunks else np.zeros(1)
    a.close()
    b.close()
    ia, ib = qa.Index.load(local), qa.Index.load(other)
    differ = 0
    for q in questions:
        x, y = ia.ask(q), ib.ask(q)
        if (x.answer, [(z.doc, z.start, z.end) for z in x.quotes]) != (
            y.answer, [(z.doc, z.start, z.end) for z in y.quotes]
        ):  # fmt: skip
            differ += 1
    return {"same_chunks": same_chunks, "min_cosine": float(cos.min()), "questions": len(questions),
            "answers_differ": differ}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument(
        "--source",
        choices=("squad", "scifact"),
        default="squad",
        help="documents to build: the SQuAD paragraphs (the target's set) or SciFact's abstracts",
    )
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default /tmp/qa-dist[-scifact])")
    ap.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
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
    if args.work is None:
        args.work = Path("/tmp/qa-dist" + ("-scifact" if args.source == "scifact" else ""))
    corpus = write_corpus(args.work / "corpus", args.source)
    configs = args.configs.split(",")
    one = start_cluster(1, cpus=2) if "ray-1node" in configs else None
    two = start_cluster(2) if "ray-2nodes" in configs else None
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            for config in configs:
                cluster = one if config == "ray-1node" else two if config == "ray-2nodes" else None
                env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
                if cluster is not None:
                    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
                address = cluster.address if cluster is not None else ""
                try:
                    runs.append(run(config, corpus, args.work / config, address, env))
                except RuntimeError as exc:  # recorded; the other configurations still run
                    runs.append({"config": config, "error": str(exc)[-1000:]})
    finally:
        for c in (one, two):
            if c is not None:
                c.stop()
    if args.source == "scifact":
        from qa.evaluation import load_beir

        asked = list(load_beir(common.SCIFACT)[1].values())
    else:
        from qa.evaluation import load_squad

        asked = [q.question for q in load_squad(common.SQUAD)[1]]
    questions = asked[:: max(1, len(asked) // args.questions)][: args.questions]
    summary: dict[str, Any] = {}
    done = [r for r in runs if "error" not in r]
    local_cps = statistics.median(r["chunks_per_s"] for r in done if r["config"] == "local")
    for config in configs:
        mine = [r for r in done if r["config"] == config]
        if not mine:
            continue
        cps = statistics.median(r["chunks_per_s"] for r in mine)
        summary[config] = {"chunks_per_s_median": cps, "vs_local": round(cps / local_cps, 3),
                           "build_s_median": statistics.median(r["build_s"] for r in mine)}  # fmt: skip
        if config != "local":
            summary[config]["equality"] = compare(args.work / "local", args.work / config, questions)
        print(f"{config}: {summary[config]}", file=sys.stderr)
    data = {"method": __doc__, "runs": runs, "summary": summary}
    name = "distributed" + ("-scifact" if args.source == "scifact" else "")
    path = common.save(name, False, data, load_before)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
