"""Embedding precision: float32 vs bfloat16 autocast, speed and agreement of the vectors.

Method: the first N SQuAD dev paragraphs are embedded by ``SentenceTransformerEmbedder`` (the
class qa builds with) with ``precision="float32"`` and ``"bfloat16"``, each in a warm model,
``encode_chunks`` with one sentence unit per chunk (the build path: chunk vectors plus pooled
unit vectors). Reported: chunks/s per thread count; cosine between the two precisions' chunk
vectors and unit vectors (min, mean); single-question embedding latency (p50/p95 over the
first 300 SQuAD questions, ``encode`` as ``Index.ask`` calls it) in each precision.
Quality of whole indexes built each way is measured with ``qa eval`` (docs/tuning.md §7).

Run: python benchmarks/precision.py [--quick] [--docs 256] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 paragraphs, 50 questions, 1 thread")
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    n_docs, n_q = (32, 50) if args.quick else (args.docs, 300)
    threads = [1] if args.quick else [int(t) for t in args.threads.split(",")]
    common.set_threads_env(max(threads))
    import numpy as np
    import torch

    from qa.embedding import SentenceTransformerEmbedder, default_model_path, native_bfloat16

    load_before = common.loadavg()
    squad = json.loads(common.SQUAD.read_text(encoding="utf-8"))
    paras = [p["context"] for a in squad["data"] for p in a["paragraphs"]][:n_docs]
    questions = [q["question"] for a in squad["data"] for p in a["paragraphs"] for q in p["qas"]][:n_q]
    units = [[(0, len(t))] for t in paras]
    models = {
        p: SentenceTransformerEmbedder(default_model_path(), precision=p) for p in ("float32", "bfloat16")
    }
    rows, runs = [], []
    vectors = {}
    for t in threads:
        for precision, emb in models.items():
            emb.threads = t
            emb.encode_chunks(paras[:8], units[:8])  # warm up this precision and thread count
            t0 = time.perf_counter()
            chunks, unit_vecs = emb.encode_chunks(paras, units)
            seconds = time.perf_counter() - t0
            vectors[precision] = (chunks, np.concatenate(unit_vecs))
            torch.set_num_threads(1)
            emb.threads = 1
            lat = []
            for q in questions:
                t1 = time.perf_counter()
                emb.encode([q])
                lat.append(time.perf_counter() - t1)
            pct = common.percentiles(lat)
            runs.append(
                {
                    "threads": t,
                    "precision": precision,
                    "chunks_per_s": len(paras) / seconds,
                    "question_ms": pct,
                }
            )
            rows.append([t, precision, round(len(paras) / seconds, 1), pct["p50"], pct["p95"]])
    (c32, u32), (c16, u16) = vectors["float32"], vectors["bfloat16"]
    chunk_cos, unit_cos = (c32 * c16).sum(axis=1), (u32 * u16).sum(axis=1)
    agreement = {
        "chunk_cosine_min": float(chunk_cos.min()),
        "chunk_cosine_mean": float(chunk_cos.mean()),
        "unit_cosine_min": float(unit_cos.min()),
        "unit_cosine_mean": float(unit_cos.mean()),
    }
    text = common.table(["threads", "precision", "chunks/s", "question p50 ms", "question p95 ms"], rows)
    text += (
        f"\n\nnative bfloat16: {native_bfloat16()}; cosine float32 vs bfloat16: chunks min "
        f"{agreement['chunk_cosine_min']:.6f} mean {agreement['chunk_cosine_mean']:.6f}, units min "
        f"{agreement['unit_cosine_min']:.6f} mean {agreement['unit_cosine_mean']:.6f}"
    )
    print(text)
    path = common.save(
        "precision",
        args.quick,
        {
            "method": __doc__,
            "documents": len(paras),
            "questions": len(questions),
            "native_bfloat16": native_bfloat16(),
            "runs": runs,
            "agreement": agreement,
            "table": text,
        },
        load_before,
    )
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
