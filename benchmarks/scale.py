"""Dense index types at scale: exact, IVF and IVF-PQ through ``qa.vectors``, at 1M and 10M vectors.

Method:
1. Real vectors: the chunk and sentence vectors of a real qa index (``--base``, e.g. the
   SQuAD paragraphs built with ``qa index``) are the centres. Synthetic vectors are made
   around them in batches of 100k, ``x = a*c_i + (1-a)*c_j + noise`` with a ~ U(0.3, 1) and
   noise N(0, 0.3/sqrt(d)) per dimension, normalised (the recipe of benchmarks/latency.py),
   and written straight into a memory-mapped ``vectors.npy`` (float32, as qa stores it), so
   10M x 384 (15.4 GB) never sits in RAM.
2. Queries: ``--queries`` real SQuAD questions embedded by the real model (float32).
3. Ground truth: exact top-10 by inner product, computed block by block over the file.
4. For each size and type: ``qa.vectors.choose`` gives the parameters, ``qa.vectors.build``
   trains (seeded sample) and fills the FAISS structure from the memory-mapped file, the file
   is written, then opened as qa opens it (``qa.vectors.DenseIndex``: IO_FLAG_MMAP |
   IO_FLAG_READ_ONLY) and searched one query at a time on one thread: recall@10 against exact,
   p50/p95 latency, open time, RSS growth (anonymous and file-backed), disk, build time; with
   an nprobe sweep, and for IVF-PQ a sweep of the exact re-scoring depth (``refine``).
   Exact search (``flat``, faiss.knn over the memory-mapped file) is timed at several sizes
   to place the flat/IVF threshold.

Every number is written to benchmarks/results/scale.json with the machine and load average.

Run: python benchmarks/scale.py --base index [--sizes 1000000,10000000] [--work /tmp/qa-scale]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

common.set_threads_env(2)  # build and ground truth on 2 threads; queries are set to 1 below

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from qa import store, vectors  # noqa: E402

BLOCK = 100_000


def questions(n: int) -> list[str]:
    from qa.evaluation import load_squad

    _, qs = load_squad(common.SQUAD)
    rng = np.random.default_rng(7)
    picked = rng.choice(len(qs), min(n, len(qs)), replace=False)
    return [qs[int(i)].question for i in picked]


def centres(base: Path) -> np.ndarray:
    gen, _ = store.open_live(base, None)
    try:
        return np.vstack([np.asarray(gen.vectors, np.float32), np.asarray(gen.unit_vectors, np.float32)])
    finally:
        gen.close()


def generate(path: Path, n: int, c: np.ndarray, seed: int = 0) -> np.ndarray:
    """Synthetic vectors around the real ones, written block by block into a memory-mapped .npy."""
    d = c.shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed)
    for lo in range(0, n, BLOCK):
        m = min(BLOCK, n - lo)
        a = rng.uniform(0.3, 1.0, (m, 1)).astype(np.float32)
        block = a * c[rng.integers(0, len(c), m)] + (1 - a) * c[rng.integers(0, len(c), m)]
        block += rng.normal(0, 0.3 / d**0.5, (m, d)).astype(np.float32)
        out[lo : lo + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    k = min(n, len(c))
    out[:k] = c[:k]  # the real vectors are in the set too
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def exact_top(xb: np.ndarray, xq: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k ids by inner product, block by block (2 threads)."""
    best_s = np.full((len(xq), k), -np.inf, np.float32)
    best_i = np.zeros((len(xq), k), np.int64)
    for lo in range(0, len(xb), BLOCK):
        s = xq @ np.asarray(xb[lo : lo + BLOCK]).T
        idx = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], 1)
        cand_i = np.concatenate([best_i, idx + lo], 1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return float(hits / truth.size)


def rss() -> dict[str, float]:
    """Resident memory split into anonymous and file-backed MiB (/proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


CPU_TIMES: list[float] = []  # thread CPU seconds of the last time_queries call


def time_queries(
    dense: vectors.DenseIndex, xq: np.ndarray, k: int = 10
) -> tuple[list[float], list[np.ndarray]]:
    """One query at a time on one thread; ``k`` rows asked (qa asks for its 100 candidates).

    Wall time is what a user waits; the thread's CPU time is kept too (``CPU_TIMES``): on this
    shared machine other work often holds the cores, and CPU time is the search's own cost.
    """
    faiss.omp_set_num_threads(1)
    for q in xq[:5]:
        dense.search(q, k)  # warm-up
    times, found = [], []
    CPU_TIMES.clear()
    for q in xq:
        t, c = time.perf_counter(), time.thread_time()
        rows, _ = dense.search(q, k)
        CPU_TIMES.append(time.thread_time() - c)
        times.append(time.perf_counter() - t)
        found.append(rows)
    return times, found


def measure_flat(xb: np.ndarray, xq: np.ndarray, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        sub = xb[:n]
        dense = vectors.DenseIndex(vectors.DenseParams(), sub)
        truth = exact_top(sub, xq)
        times, found = time_queries(dense, xq)
        rows.append({"type": "flat", "n": n, "recall@10": round(recall(found, truth), 4),
                     "latency_ms": common.percentiles(times), "cpu_ms": common.percentiles(CPU_TIMES),
                     "load": common.loadavg()})  # fmt: skip
        print(f"  flat n={n}: {rows[-1]['latency_ms']} cpu {rows[-1]['cpu_ms']}", file=sys.stderr, flush=True)
    return rows


def measure_type(
    work: Path,
    xb: np.ndarray,
    xq: np.ndarray,
    truth: np.ndarray,
    kind: str,
    nprobes: list[int],
    refines: list[int],
    pq_m: int | None = None,
) -> dict[str, Any]:
    n, d = xb.shape
    params = vectors.choose(n, d, kind)
    if pq_m is not None:
        params = vectors.DenseParams(**{**params.__dict__, "pq_m": pq_m})
    load0 = common.loadavg()
    t = time.perf_counter()
    index, params = vectors.build(xb, params, threads=2)
    build_s = time.perf_counter() - t
    path = work / f"{kind}-{n}.faiss"
    vectors.write(index, path)
    del index
    gc.collect()
    before = rss()
    t = time.perf_counter()
    dense = vectors.DenseIndex(params, xb, path)
    open_s = time.perf_counter() - t
    after_open = rss()
    result: dict[str, Any] = {
        "type": kind,
        "n": n,
        "params": params.to_manifest(),
        "build_s": round(build_s, 1),
        "open_s": round(open_s, 4),
        "disk_mib": round(path.stat().st_size / 2**20, 1),
        "vectors_npy_mib": round(n * d * 4 / 2**20, 1),
        "rss_before_open_mib": before,
        "rss_after_open_mib": after_open,
        "load_build": load0,
        "rows": [],
    }
    assert dense._faiss is not None
    for nprobe in nprobes:
        for refine in refines if kind == "ivfpq" else [1]:
            dense._faiss.nprobe = nprobe
            dense.params = vectors.DenseParams(**{**params.__dict__, "nprobe": nprobe,
                                                  "refine": refine if kind == "ivfpq" else None})  # fmt: skip
            times, found = time_queries(dense, xq)
            cpu = common.percentiles(CPU_TIMES)
            qa_times, qa_found = time_queries(dense, xq, 100)  # what retrieval asks for: 100 candidates
            row = {"nprobe": nprobe, "refine": refine if kind == "ivfpq" else None,
                   "recall@10": round(recall(found, truth), 4), "latency_ms": common.percentiles(times),
                   "recall@10_of_100": round(recall(qa_found, truth), 4),
                   "cpu_ms": cpu, "latency_100_ms": common.percentiles(qa_times),
                   "cpu_100_ms": common.percentiles(CPU_TIMES),
                   "rss_mib": rss(), "load": common.loadavg()}  # fmt: skip
            result["rows"].append(row)
            print(f"  {kind} m={params.pq_m} n={n} nprobe={nprobe} refine={row['refine']}: recall "
                  f"{row['recall@10']} / {row['recall@10_of_100']} p95 {row['latency_ms']['p95']} / "
                  f"{row['latency_100_ms']['p95']} cpu p95 {cpu['p95']} / {row['cpu_100_ms']['p95']} "
                  f"rss {row['rss_mib']}",
                  file=sys.stderr, flush=True)  # fmt: skip
    path.unlink()
    return result


def pq_variants(kind: str, pq_ms: list[int]) -> list[int | None]:
    return list(pq_ms) if kind == "ivfpq" else [None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="a real qa index whose vectors are the centres")
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--types", default="ivf,ivfpq", help="types at each size (no ivf above --ivf-max)")
    ap.add_argument("--ivf-max", type=int, default=2_000_000, help="largest size to build IVF-Flat at")
    ap.add_argument("--flat-sizes", default="50000,100000,200000,500000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", default="8,16,32,64")
    ap.add_argument("--refine", default="1,2,4,8")
    ap.add_argument("--pq-m", default="48,96", help="IVF-PQ code bytes per vector to compare")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qa-scale"))
    ap.add_argument("--quick", action="store_true", help="100k and 300k vectors, 50 queries")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    flat_sizes = [int(s) for s in args.flat_sizes.split(",")]
    if args.quick:
        sizes, flat_sizes, args.queries = [100_000, 300_000], [50_000, 100_000], 50
    load_before = common.loadavg()
    args.work.mkdir(parents=True, exist_ok=True)
    c = centres(args.base)
    from qa.embedding import get_embedder

    xq = get_embedder().encode(questions(args.queries))
    results: dict[str, Any] = {"method": __doc__, "centres": len(c), "queries": len(xq), "sizes": {}}
    for n in sizes:
        print(f"{n:,} vectors (load {common.loadavg()}) ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        xb = generate(args.work / f"vectors-{n}.npy", n, c)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        truth = exact_top(xb, xq)
        entry: dict[str, Any] = {"generate_s": round(gen_s, 1), "exact_s": round(time.perf_counter() - t, 1)}
        pairs = np.asarray(xb[:1000]) @ np.asarray(xb[-1000:]).T
        entry["random_pair_cos_mean"] = round(float(pairs.mean()), 3)
        if n == max(sizes) or n >= max(flat_sizes):
            entry["flat"] = measure_flat(xb, xq, [s for s in flat_sizes if s <= n])
            flat_sizes = []
        entry["types"] = []
        for kind in args.types.split(","):
            if kind == "ivf" and n > args.ivf_max:
                gib = n * c.shape[1] * 4 / 2**30
                entry["types"].append({"type": "ivf", "n": n, "skipped": (
                    f"IVF-Flat keeps a second full copy of the vectors in its lists ({gib:.1f} GiB): "
                    "more than this shared 24 GiB machine can build in RAM")})  # fmt: skip
                continue
            for m in pq_variants(kind, [int(x) for x in args.pq_m.split(",")]):
                entry["types"].append(measure_type(args.work, xb, xq, truth, kind,
                                                   [int(x) for x in args.nprobe.split(",")],
                                                   [int(x) for x in args.refine.split(",")], m))  # fmt: skip
        results["sizes"][str(n)] = entry
        del xb
        gc.collect()
        (args.work / f"vectors-{n}.npy").unlink()
        path = common.save("scale", args.quick, results, load_before)  # partial results survive a crash
    shutil.rmtree(args.work, ignore_errors=True)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
