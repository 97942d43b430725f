"""Check and tune the answer-stage weights on SciFact's *train* queries (BEIR layout).

Documents are ranked by their best quote, as `qa eval beir` does; nDCG@10 is computed with
duplicates of a document removed. Every candidate is scored once; weightings are evaluated
offline. Run: python benchmarks/tune_beir.py [--beir DIR] [--split train]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from qa import retrieval
from qa.answering import idf_weights, weighted_overlap
from qa.evaluation import load_beir, prepare_index
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPTH = 40
LEX = tuple((lw, bw) for lw in (0.2, 0.45, 0.8) for bw in (0.0, 0.4))


def features(index, queries, qrels):
    gen = index.generation
    ids = [q for q in qrels if q in queries]
    vecs = index.embedder.encode([queries[q] for q in ids])
    toks = retrieval.tokenize([queries[q] for q in ids])
    idf = idf_weights(gen)
    n = len(ids)
    t = {
        "doc": np.full((n, DEPTH), -1),
        "rel": np.zeros((n, DEPTH)),
        "mask": np.zeros((n, DEPTH), bool),
        "dr": np.zeros((n, DEPTH)),
        "br": np.zeros((n, DEPTH)),
        "dense": np.zeros((n, DEPTH)),
        "whole": np.zeros((n, DEPTH)),
        "g": {k: np.zeros((n, DEPTH)) for k in LEX},
        "idcg": np.zeros(n),
    }
    for i, (qid, vec, qt) in enumerate(zip(ids, vecs, toks, strict=True)):
        rels = {d: r for d, r in qrels[qid].items() if r > 0}
        ideal = sorted(rels.values(), reverse=True)[:10]
        t["idcg"][i] = sum(r / np.log2(k + 2) for k, r in enumerate(ideal))
        hits = retrieval.search(gen, vec, qt, 100, 0.5, 60)[:DEPTH]
        for j, h in enumerate(hits):
            spans, uv = gen.units_in(h.row)
            d = int(gen.chunks[h.row][0])
            text = gen.text(d)
            ut = retrieval.tokenize([text[a:b] for a, b in spans.tolist()])
            cos = uv.astype(np.float32) @ vec
            ov = np.array([weighted_overlap(qt, x, idf) for x in ut])
            qb = set(itertools.pairwise(qt))
            bg = np.array([len(qb & set(itertools.pairwise(x))) / max(1, len(qb)) for x in ut])
            t["doc"][i, j], t["mask"][i, j] = d, True
            t["rel"][i, j] = rels.get(gen.documents[d].id.removesuffix(".txt"), 0)
            t["dr"][i, j], t["br"][i, j], t["dense"][i, j] = h.dense_rank, h.bm25_rank, h.dense
            t["whole"][i, j] = weighted_overlap(qt, [w for x in ut for w in x], idf)
            for k in LEX:
                t["g"][k][i, j] = (cos + k[0] * ov + k[1] * bg).max()
    return t


def ndcg(t, dw, lex, ww, fw, cw, rk=60):
    rrf = np.where(t["dr"] > 0, dw / (rk + t["dr"]), 0) + np.where(t["br"] > 0, (1 - dw) / (rk + t["br"]), 0)
    final = np.where(t["mask"], t["g"][lex] + ww * t["whole"] + fw * rrf + cw * t["dense"], -np.inf)
    order = np.argsort(-final, axis=1, kind="stable")
    rows = np.arange(len(final))[:, None]
    docs, rel = t["doc"][rows, order], t["rel"][rows, order]
    eq = docs[:, :, None] == docs[:, None, :]
    dup = (eq & np.tril(np.ones((DEPTH, DEPTH), bool), -1)[None]).any(axis=2) | (docs < 0)
    rank = np.cumsum(~dup, axis=1) - 1
    gain = np.where(~dup & (rank < 10), rel / np.log2(rank + 2), 0).sum(axis=1)
    ok = t["idcg"] > 0
    return float((gain[ok] / t["idcg"][ok]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared/eval/scifact/beir")
    ap.add_argument("--work", type=Path, default=ROOT / ".eval-cache/scifact")
    ap.add_argument("--split", default="train")
    args = ap.parse_args()
    docs, queries, qrels = load_beir(args.beir, args.split)
    index = prepare_index(docs, args.work, Settings(), None)
    t0 = time.time()
    t = features(index, queries, qrels)
    print(f"{len(t['idcg'])} queries, features in {time.time() - t0:.0f}s", flush=True)
    print("default (SQuAD-chosen) weights:", round(ndcg(t, 0.3, (0.45, 0.4), 0.15, 0.0, 0.0), 4))
    print("fused order only (RRF 0.5):", round(ndcg(t, 0.5, LEX[0], 0.0, 1000.0, 0.0), 4))
    grid = itertools.product(
        [0.3, 0.5, 0.7], LEX, [0.0, 0.15, 0.5, 1.0], [0.0, 15.0, 30.0, 60.0], [0.0, 0.5, 1.0]
    )
    res = sorted(((ndcg(t, *p), p) for p in grid), reverse=True)
    for score, p in res[:10]:
        print(
            json.dumps(
                {
                    "dense_weight": p[0],
                    "lexical": p[1],
                    "chunk_overlap": p[2],
                    "fused": p[3],
                    "dense": p[4],
                    "ndcg@10": round(score, 4),
                }
            )
        )


if __name__ == "__main__":
    main()
