"""Query latency of ``Index.ask`` at 10k and 100k chunks, FAISS alone at 1M, memory and disk.

Method:
1. Base: the SQuAD dev paragraphs are indexed for real (real model, ``prepare_index``); kept
   in ``--work`` so later runs reuse it.
2. Scaled indexes (10k, 100k chunks): the base documents are replicated until the chunk count
   is reached. Replica 0 is the base itself; in every other replica ~15% of the words (3+
   letters) are swapped for random words of the same length from the SciFact vocabulary, so
   chunk and sentence offsets stay valid, BM25 sees a realistic, growing vocabulary, and no
   two replicas are identical. Chunk and sentence vectors are the base vectors plus Gaussian
   noise (cosine ~0.9 to the original), re-normalised. The generation is written through
   ``qa.store.write_generation`` (BM25 built by ``qa.retrieval.build_bm25``), with the base
   manifest's model fingerprint, so ``Index.load`` verifies and opens it like any index.
3. Each index is measured in a fresh process (``--threads`` thread cap for torch, FAISS and
   BLAS): ``Index.load``, warm-up questions, then ``--queries`` SQuAD questions through
   ``Index.ask`` with the real model embedding every question; p50/p95/p99 of the total and of
   the embed/search/answer parts, plus dense-only and BM25-only search times; RSS after load
   and after the questions; bytes on disk per chunk.
4. FAISS alone at 1M vectors (a fresh process): synthetic vectors made from the real base
   chunk and sentence vectors c: ``a*c_i + (1-a)*c_j + noise`` with a ~ U(0.3, 1) and noise
   N(0, 0.3/sqrt(d)) per dimension, normalised; the real vectors themselves are included.
   Queries are real question embeddings (the results record the mean cosine of random pairs
   and of each query's top-1 and top-10 neighbours, to compare with real data). Exact
   ``IndexFlatIP`` (what qa uses) vs ``IVF1024,Flat`` (nprobe sweep) and ``HNSW32,Flat``
   (efSearch sweep): recall@10 against exact, single-query latency, build time and memory.

5. Question encoders (issue 15): in each process of step 3 the index is loaded once and
   every question is asked once per ``--encoders`` (``QA_QUERY_ENCODER``: ``numpy``, the
   default, and ``sentence-transformers``, the torch path it replaced), swapping
   ``Index.embedder`` in rotating order, so both meet the same questions under the same
   (shared, fluctuating) load; RSS is recorded after the first encoder's warm-up (numpy
   alone) and after both. Then the forward pass alone, in a fresh process: ``--queries``
   SQuAD questions (median 13 tokens) tokenised once, then alternately the numpy
   ``BertEncoder.hidden_states`` and torch's ``BertModel`` forward (``torch.inference_mode``)
   on the same ids, at each ``--threads`` count (numpy's BLAS set through threadpoolctl,
   torch's through ``torch.set_num_threads``).

Target: p95 of ``Index.ask`` <= 50 ms at 100k chunks. ANN candidates need recall@10 >= 0.95.
Issue 15: with the numpy encoder, p95 no worse than with torch; the numpy forward of one short
question costs no more than torch's.

Run: python benchmarks/latency.py [--quick] [--sizes 10000,100000] [--threads 1,2] [--faiss-n 1000000]
     [--encoders numpy,sentence-transformers] [--name latency]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

MARK = "RESULT-JSON: "
WORD = re.compile(r"[A-Za-z]{3,}")


# ------------------------------------------------------------------------------ building


def base_index(work: Path, n_docs: int | None) -> Path:
    """The real index of the SQuAD paragraphs (incremental: free when already built)."""
    import qa
    from qa.evaluation import load_squad, prepare_index

    docs, _ = load_squad(common.SQUAD)
    docs = dict(list(docs.items())[:n_docs])
    settings = qa.Settings(chunk_tokens=200, threads=1)
    prepare_index(docs, work / "base", settings, None)
    return work / "base" / "index"


def _vocabulary() -> dict[int, list[str]]:
    from qa.evaluation import load_beir

    docs = load_beir(common.SCIFACT)[0]
    by_len: dict[int, set[str]] = {}
    for text in docs.values():
        for w in WORD.findall(text):
            by_len.setdefault(len(w), set()).add(w.lower())
    return {k: sorted(v) for k, v in by_len.items()}


def _perturb(text: str, rng: random.Random, vocab: dict[int, list[str]], share: float) -> str:
    def swap(m: re.Match[str]) -> str:
        w = m.group(0)
        pool = vocab.get(len(w))
        return rng.choice(pool) if pool and rng.random() < share else w

    out = WORD.sub(swap, text)
    assert len(out) == len(text), "perturbation must keep offsets"
    return out


def scaled_index(base: Path, target: Path, chunks_wanted: int, seed: int = 0) -> dict[str, Any]:
    """Write a generation of >= ``chunks_wanted`` chunks made from replicas of the base index."""
    import numpy as np

    from qa import store
    from qa.documents import Document
    from qa.retrieval import build_bm25

    gen, _ = store.open_live(base, None)
    live = store.read_pointer(target) if target.exists() else None
    if live:
        manifest = json.loads((target / live / store.MANIFEST).read_text())
        if manifest["counts"]["chunks"] >= chunks_wanted and manifest.get("bench_base") == gen.name:
            return {"reused": True, "chunks": manifest["counts"]["chunks"]}
    t0 = time.perf_counter()
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    vocab = _vocabulary()
    base_docs = [gen.document(i.row) for i in gen.documents]
    base_vecs = np.asarray(gen.vectors, np.float32)
    d = base_vecs.shape[1]
    per_doc: dict[int, list[int]] = {}
    for row, (doc_row, _, _) in enumerate(gen.chunks.tolist()):
        per_doc.setdefault(doc_row, []).append(row)
    documents, chunks, keys, unit_ptr, units, unit_vecs, vecs, texts = [], [], [], [0], [], [], [], []
    replica = 0
    while len(chunks) < chunks_wanted:
        for doc_row, doc in enumerate(base_docs):
            if len(chunks) >= chunks_wanted:
                break
            text = doc.text if replica == 0 else _perturb(doc.text, rng, vocab, 0.15)
            new_row = len(documents)
            digest = hashlib.sha256(text.encode()).hexdigest()
            documents.append(
                Document(
                    f"r{replica:03d}/{doc.id}", digest, text, doc.format, len(text.encode()), doc.locations
                )
            )
            for row in per_doc.get(doc_row, []):
                _, start, end = (int(x) for x in gen.chunks[row])
                spans, uv = gen.units_in(row)
                chunks.append((new_row, start, end))
                keys.append(nrng.bytes(16))
                texts.append(text[start:end])
                units.extend(spans.tolist())
                unit_ptr.append(len(units))
                if replica == 0:
                    vecs.append(base_vecs[row])
                    unit_vecs.append(np.asarray(uv, np.float32))
                else:
                    vecs.append(base_vecs[row] + nrng.normal(0, 0.5 / d**0.5, d))
                    unit_vecs.append(np.asarray(uv, np.float32) + nrng.normal(0, 0.5 / d**0.5, uv.shape))
        replica += 1
    vectors = np.vstack(vecs).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    unit_matrix = np.vstack(unit_vecs)
    unit_matrix /= np.linalg.norm(unit_matrix, axis=1, keepdims=True)
    t_bm25 = time.perf_counter()
    bm25 = build_bm25(texts)
    bm25_s = time.perf_counter() - t_bm25
    manifest = {
        k: v
        for k, v in gen.manifest.items()
        if k not in ("files", "checksum", "format", "format_version", "generation", "metric")
    }
    manifest["counts"] = {
        "documents": len(documents),
        "chunks": len(chunks),
        "units": len(units),
        "skipped": 0,
    }
    manifest["documents"] = [
        {"id": doc.id, "hash": doc.hash, "format": doc.format, "size": doc.size, "chunks": 0, "note": ""}
        for doc in documents
    ]
    manifest["bench_base"] = gen.name
    manifest["bench_note"] = "synthetic replicas of the base index for latency benchmarks"
    target.mkdir(parents=True, exist_ok=True)
    with store.build_lock(target):
        name = store.write_generation(
            target,
            documents,
            np.asarray(chunks, np.int64),
            np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 16),
            np.asarray(unit_ptr, np.int64),
            np.asarray(units, np.int64).reshape(-1, 2),
            unit_matrix.astype(np.float16),
            vectors,
            bm25,
            manifest,
        )
        store.set_live(target, name)
        store.prune(target, 2)
    gen.close()
    return {
        "reused": False,
        "chunks": len(chunks),
        "documents": len(documents),
        "replicas": replica,
        "generate_s": time.perf_counter() - t0,
        "bm25_build_s": bm25_s,
    }


# ------------------------------------------------------------------------------ workers


def _questions(n: int, seed: int = 1) -> list[str]:
    from qa.evaluation import load_squad

    _, qs = load_squad(common.SQUAD)
    rng = random.Random(seed)
    picked = rng.sample(qs, min(n, len(qs)))
    return [q.question for q in picked]


def worker_ask(
    index: Path, threads: int, n_queries: int, warmup: int, encoders: list[str]
) -> list[dict[str, Any]]:
    """One index, one process; each question is asked once per encoder, in rotating order, so
    every encoder meets the same questions under the same (shared, fluctuating) machine load."""
    import faiss

    import qa
    from qa import retrieval, store
    from qa.embedding import get_query_embedder

    faiss.omp_set_num_threads(threads)
    rss0 = common.rss_mib()
    t0 = time.perf_counter()
    settings = qa.Settings(threads=threads, query_encoder=encoders[0])  # type: ignore[arg-type]
    idx = qa.Index.load(index, settings)
    load_s = time.perf_counter() - t0
    rss_loaded = common.rss_mib()
    questions = _questions(warmup + n_queries)
    embedders, first, rss_after = {}, {}, {}
    for enc in encoders:  # load and warm each encoder; RSS after each (the first alone, then both)
        embedders[enc] = get_query_embedder(settings.model_copy(update={"query_encoder": enc}))
        idx.embedder = embedders[enc]
        t1 = time.perf_counter()
        ans = idx.ask(questions[0])
        first[enc] = (time.perf_counter() - t1, ans.timings)
        for q in questions[1:warmup]:
            idx.ask(q)
        rss_after[enc] = common.rss_mib()
    totals: dict[str, list[float]] = {e: [] for e in encoders}
    parts: dict[str, dict[str, list[float]]] = {
        e: {"embed": [], "search": [], "answer": []} for e in encoders
    }
    dense, lexical = [], []
    gen = idx.generation
    for i, q in enumerate(questions[warmup:]):
        for enc in encoders[i % len(encoders) :] + encoders[: i % len(encoders)]:
            idx.embedder = embedders[enc]
            t = time.perf_counter()
            ans = idx.ask(q)
            totals[enc].append(time.perf_counter() - t)
            for k in parts[enc]:
                parts[enc][k].append(ans.timings[k])
        vec = idx.embedder.encode([q])[0]
        toks = retrieval.tokenize([q])[0]
        t = time.perf_counter()
        retrieval.dense_search(gen, vec, settings.candidates)
        dense.append(time.perf_counter() - t)
        t = time.perf_counter()
        retrieval.bm25_scores(gen, toks)
        lexical.append(time.perf_counter() - t)
    gen_dir = index / store.read_pointer(index)
    files = {p.relative_to(gen_dir).as_posix(): p.stat().st_size for p in gen_dir.rglob("*") if p.is_file()}
    n = len(gen.chunks)
    shared = {
        "chunks": n,
        "documents": len(gen.documents),
        "units": len(gen.units),
        "queries": n_queries,
        "alternated": encoders,
        "load_s": load_s,
        "dense_search_ms": common.percentiles(dense),
        "bm25_scores_ms": common.percentiles(lexical),
        "rss_mib_start": rss0,
        "rss_mib_loaded": rss_loaded,
        "rss_mib_end": common.rss_mib(),
        "disk_bytes": sum(files.values()),
        "disk_bytes_per_chunk": sum(files.values()) / max(1, n),
        "disk_files_bytes_per_chunk": {
            k: round(v / max(1, n), 1) for k, v in sorted(files.items(), key=lambda kv: -kv[1])[:8]
        },
    }
    return [
        {
            **shared,
            "encoder": type(embedders[enc]).__name__,
            "first_ask_s": first[enc][0],
            "first_ask_timings": first[enc][1],
            "ask_ms": common.percentiles(totals[enc]),
            "parts_ms": {k: common.percentiles(v) for k, v in parts[enc].items()},
            "rss_mib_after_warmup": rss_after[enc],
        }
        for enc in encoders
    ]


def worker_forward(threads_list: list[int], n_queries: int, warmup: int) -> dict[str, Any]:
    """The forward pass alone for single short questions: numpy vs torch, same ids, alternating."""
    import numpy as np
    import torch

    from qa.embedding import default_model_path, get_embedder
    from qa.query_embedding import NumpyEmbedder, limit_blas_threads

    fast = NumpyEmbedder(default_model_path())
    tok = fast.load()
    bert = get_embedder()._load()[0].auto_model  # the sentence-transformers model's BertModel
    questions = _questions(warmup + n_queries, seed=3)
    ids = [np.array([tok.encode(q).ids]) for q in questions]
    rows = []
    for threads in threads_list:
        limit_blas_threads(threads)
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"numpy": [], "torch": []}
        for i, x in enumerate(ids):
            t = time.perf_counter()
            fast.encoder.hidden_states(x)
            t_np = time.perf_counter() - t
            xt = torch.from_numpy(x)
            t = time.perf_counter()
            with torch.inference_mode():
                bert(input_ids=xt, attention_mask=torch.ones_like(xt), token_type_ids=torch.zeros_like(xt))
            t_torch = time.perf_counter() - t
            if i >= warmup:
                times["numpy"].append(t_np)
                times["torch"].append(t_torch)
        rows += [{"threads": threads, "encoder": k, "ms": common.percentiles(v)} for k, v in times.items()]
        rows[-1]["load"] = rows[-2]["load"] = common.loadavg()
    tokens = sorted(x.shape[1] for x in ids[warmup:])
    return {"rows": rows, "tokens_median": tokens[len(tokens) // 2], "tokens_max": tokens[-1]}


def _lat(index: Any, queries: Any, k: int) -> tuple[list[float], Any]:
    import numpy as np

    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    return times, np.vstack(found)


def _recall(found: Any, truth: Any) -> float:
    k = truth.shape[1]
    return float(sum(len(set(f[:k]) & set(t)) for f, t in zip(found, truth, strict=True)) / truth.size)


def worker_faiss(base: Path, n: int, threads_list: list[int], n_queries: int, hnsw: bool) -> dict[str, Any]:
    import faiss
    import numpy as np

    from qa import store
    from qa.embedding import get_embedder

    gen, _ = store.open_live(base, None)
    centers = np.vstack([np.asarray(gen.vectors, np.float32), np.asarray(gen.unit_vectors, np.float32)])
    gen.close()
    d = centers.shape[1]
    rng = np.random.default_rng(0)
    rss0 = common.rss_mib()
    xb = np.empty((n, d), np.float32)
    step = 100_000
    for i in range(0, n, step):  # x = a*c_i + (1-a)*c_j + noise, a ~ U(0.3, 1): see the docstring
        m = min(step, n - i)
        a = rng.uniform(0.3, 1.0, (m, 1)).astype(np.float32)
        block = (
            a * centers[rng.integers(0, len(centers), m)]
            + (1 - a) * centers[rng.integers(0, len(centers), m)]
        )
        block += rng.normal(0, 0.3 / d**0.5, (m, d)).astype(np.float32)
        xb[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    xb[: min(n, len(centers))] = centers[:n]  # the real vectors themselves are in the set too
    xq = get_embedder().encode(_questions(n_queries, seed=2))
    out: dict[str, Any] = {"n": n, "d": d, "queries": len(xq), "centers": len(centers)}
    k = 10
    faiss.omp_set_num_threads(2)
    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    scores, truth = flat.search(xq, k)  # batched: ground truth
    out["query_top1_cos_mean"] = round(float(scores[:, 0].mean()), 3)
    out["query_top10_cos_mean"] = round(float(scores[:, -1].mean()), 3)
    out["random_pair_cos_mean"] = round(float((xb[:1000] @ xb[-1000:].T).mean()), 3)
    rows = []

    def measure(name: str, index: Any, params: dict[str, Any], build_s: float, mem_mib: float) -> None:
        for t in threads_list:
            faiss.omp_set_num_threads(t)
            _lat(index, xq[:5], k)  # warm-up
            times, found = _lat(index, xq, k)
            rows.append(
                {
                    "index": name,
                    **params,
                    "threads": t,
                    "recall@10": round(_recall(found, truth), 4),
                    "latency_ms": common.percentiles(times),
                    "build_s": round(build_s, 1),
                    "memory_mib": round(mem_mib, 1),
                }
            )
            print(f"  {name} {params} threads={t}: {rows[-1]['recall@10']} {rows[-1]['latency_ms']}",
                  file=sys.stderr, flush=True)  # fmt: skip

    measure("Flat (exact)", flat, {}, 0.0, n * d * 4 / 2**20)
    del flat
    faiss.omp_set_num_threads(2)
    t = time.perf_counter()
    nlist = 1024
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xb[rng.choice(n, min(n, 64 * nlist), replace=False)])
    ivf.add(xb)
    ivf_build = time.perf_counter() - t
    for nprobe in (8, 16, 32, 64, 128):
        ivf.nprobe = nprobe
        measure(f"IVF{nlist},Flat", ivf, {"nprobe": nprobe}, ivf_build, (n * (d * 4 + 8)) / 2**20)
    del ivf, quant
    if hnsw:
        faiss.omp_set_num_threads(2)
        t = time.perf_counter()
        h = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        h.hnsw.efConstruction = 40
        h.add(xb)
        h_build = time.perf_counter() - t
        for ef in (32, 64, 128, 256, 512):
            h.hnsw.efSearch = ef
            measure("HNSW32,Flat", h, {"efSearch": ef}, h_build, (n * (d * 4 + 32 * 2 * 4 * 1.05)) / 2**20)
        del h
    out["rows"] = rows
    out["rss_mib_start"] = rss0
    out["rss_mib_end"] = common.rss_mib()
    return out


def run_worker(args: list[str], threads: int, script: str = __file__) -> Any:
    """Run ``script`` (this file by default) with ``args`` in a fresh process on ``threads``
    threads; return the JSON it printed after ``MARK``."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, script, *args], env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args} failed ({proc.returncode})")
    return json.loads(lines[-1][len(MARK) :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1k and 5k chunks, 50 queries, FAISS at 50k")
    ap.add_argument("--sizes", default="10000,100000", help="chunk counts of the qa indexes")
    ap.add_argument("--threads", default="1,2", help="thread caps to measure")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--faiss-n", type=int, default=1_000_000, help="vectors of the FAISS-only test (0: skip)")
    ap.add_argument("--no-hnsw", action="store_true", help="skip HNSW (its build is the slow part)")
    ap.add_argument("--base-docs", type=int, default=None, help="SQuAD paragraphs in the base index")
    ap.add_argument(
        "--work", type=Path, default=Path(os.environ.get("QA_BENCH_WORK", "/tmp/qa-bench-latency"))
    )
    ap.add_argument("--wait-load", type=float, default=0.0, help="wait until the load average is below this")
    ap.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --wait-load, seconds")
    ap.add_argument(
        "--encoders", default="numpy,sentence-transformers", help="question encoders (QA_QUERY_ENCODER)"
    )
    ap.add_argument("--name", default="latency", help="results/<name>.json (keep other runs' files)")
    ap.add_argument("--worker", choices=("ask", "faiss", "forward"), help=argparse.SUPPRESS)
    ap.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    encoders = args.encoders.split(",")

    if args.worker == "ask":
        print(
            MARK + json.dumps(worker_ask(args.index, threads[0], args.queries, args.warmup, encoders)),
            flush=True,
        )
        return
    if args.worker == "forward":
        res = worker_forward(threads, args.queries, args.warmup)
        print(MARK + json.dumps(res), flush=True)
        return
    if args.worker == "faiss":
        res = worker_faiss(args.index, args.faiss_n, threads, args.queries, not args.no_hnsw)
        print(MARK + json.dumps(res), flush=True)
        return

    common.set_threads_env(1)
    if args.quick:
        sizes, n_queries, faiss_n, base_docs = [1000, 5000], 50, 50_000, args.base_docs or 100
        work = args.work.with_name(args.work.name + "-quick")
    else:
        sizes, n_queries, faiss_n, base_docs = (
            [int(s) for s in args.sizes.split(",")],
            args.queries,
            args.faiss_n,
            args.base_docs,
        )
        work = args.work  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    print(f"base index in {work} ...", file=sys.stderr, flush=True)
    base = base_index(work, base_docs)
    generated = {}
    for size in sizes:
        print(f"scaled index of {size} chunks ...", file=sys.stderr, flush=True)
        generated[size] = scaled_index(base, work / f"index-{size}", size)
    if args.wait_load:
        common.wait_for_quiet(args.wait_load, args.max_wait)
    load_before = common.loadavg()
    ask_runs = []
    for size in sizes:
        for t in threads:
            load = common.loadavg()
            print(f"ask at {size} chunks, {t} thread(s) (load {load}) ...", file=sys.stderr, flush=True)
            results = run_worker(
                ["--worker", "ask", "--index", str(work / f"index-{size}"), "--threads", str(t),
                 "--queries", str(n_queries), "--warmup", str(args.warmup), "--encoders", args.encoders],
                t,
            )  # fmt: skip
            for res in results:
                res.update(size=size, threads=t, load_at_start=load, load_at_end=common.loadavg())
                ask_runs.append(res)
                msg = f"  {res['encoder']}: p50 {res['ask_ms']['p50']} ms, p95 {res['ask_ms']['p95']} ms"
                print(msg, file=sys.stderr, flush=True)
    forward = None
    if len(encoders) > 1:
        msg = f"forward pass alone, numpy vs torch (load {common.loadavg()}) ..."
        print(msg, file=sys.stderr, flush=True)
        forward = run_worker(
            ["--worker", "forward", "--threads", args.threads, "--queries", str(n_queries),
             "--warmup", str(args.warmup)],
            max(threads),
        )  # fmt: skip
    faiss_res = None
    if faiss_n:
        load = common.loadavg()
        print(f"FAISS alone at {faiss_n} vectors (load {load}) ...", file=sys.stderr, flush=True)
        faiss_res = run_worker(
            ["--worker", "faiss", "--index", str(base), "--threads", args.threads, "--faiss-n", str(faiss_n),
             "--queries", str(n_queries)] + (["--no-hnsw"] if args.no_hnsw else []),
            max(threads),
        )  # fmt: skip
        faiss_res.update(load_at_start=load, load_at_end=common.loadavg())

    rows = [
        [r["chunks"], r["threads"], r.get("encoder", "-"), r["ask_ms"]["p50"], r["ask_ms"]["p95"],
         r["ask_ms"]["p99"],
         r["parts_ms"]["embed"]["p50"], r["parts_ms"]["search"]["p50"], r["parts_ms"]["answer"]["p50"],
         r["dense_search_ms"]["p50"], r["bm25_scores_ms"]["p50"], round(r["load_s"], 2),
         r.get("rss_mib_after_warmup", r["rss_mib_end"]).get("VmRSS"), round(r["disk_bytes_per_chunk"]),
         f"{r['load_at_start'][0]}→{r['load_at_end'][0]}"]
        for r in ask_runs
    ]  # fmt: skip
    text = common.table(
        ["chunks", "thr", "question encoder", "ask p50 ms", "p95", "p99", "embed p50", "search p50",
         "answer p50",
         "dense p50", "bm25 p50", "load s", "RSS MiB", "disk B/chunk", "load avg"],
        rows,
    )  # fmt: skip
    target = [r for r in ask_runs if r["chunks"] >= 100_000 and r["threads"] == 1]
    for r in target:
        p95 = r["ask_ms"]["p95"]
        text += f"\n\np95 at {r['chunks']} chunks, 1 thread, {r['encoder']}: {p95} ms; target ≤ 50 ms: " + (
            "met" if p95 <= 50 else "NOT met"
        )
    if forward:
        text += (
            f"\n\nForward pass alone, one question at a time ({n_queries} SQuAD questions, median "
            f"{forward['tokens_median']} tokens, max {forward['tokens_max']}; numpy and torch "
            "alternating):\n\n"
        )
        text += common.table(
            ["threads", "forward", "p50 ms", "p95 ms", "p99 ms", "mean ms", "load avg"],
            [[r["threads"], r["encoder"], r["ms"]["p50"], r["ms"]["p95"], r["ms"]["p99"], r["ms"]["mean"],
              r["load"][0]] for r in forward["rows"]],
        )  # fmt: skip
    if faiss_res:
        text += (
            f"\n\nFAISS alone, {faiss_res['n']:,} vectors (d={faiss_res['d']}), top-10, single queries:\n\n"
        )
        text += common.table(
            ["index", "param", "thr", "recall@10", "p50 ms", "p95 ms", "p99 ms", "build s", "memory MiB"],
            [
                [r["index"], next((f"{k}={v}" for k, v in r.items() if k in ("nprobe", "efSearch")), "-"),
                 r["threads"], r["recall@10"], r["latency_ms"]["p50"], r["latency_ms"]["p95"],
                 r["latency_ms"]["p99"], r["build_s"], r["memory_mib"]]
                for r in faiss_res["rows"]
            ],
        )  # fmt: skip
    print(text)
    path = common.save(
        args.name,
        args.quick,
        {
            "method": __doc__,
            "target": "Index.ask p95 <= 50 ms at 100k chunks (1 thread); ANN recall@10 >= 0.95",
            "generated": {str(k): v for k, v in generated.items()},
            "ask": ask_runs,
            "forward": forward,
            "faiss": faiss_res,
            "table": text,
        },
        load_before,
    )
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
