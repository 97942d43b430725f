"""Choose retrieval and answer-stage weights on SQuAD by measurement.

Tune on articles 1-12 of the SQuAD dev slice, confirm on articles 13-24 (held out).
For each question the fused candidates (dense + BM25, 100 each) are scored once; every
weighting is then evaluated offline on those features, so the grid costs seconds.

Run: python benchmarks/tune.py [--squad FILE] [--work DIR]   (results: docs/tuning.md)
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
from qa.evaluation import load_squad, prepare_index
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def features(index, questions, depth=30):
    """Per question: arrays for the top ``depth`` fused hits and their units."""
    gen = index.generation
    emb = index.embedder
    vecs = emb.encode([q.question for q in questions])
    toks = retrieval.tokenize([q.question for q in questions])
    idf = idf_weights(gen)
    out = []
    for q, vec, qt in zip(questions, vecs, toks, strict=True):
        hits = retrieval.search(gen, vec, qt, 100, 0.5, 60)
        rows = {}
        d_rank = {h.row: h.dense_rank for h in hits}
        b_rank = {h.row: h.bm25_rank for h in hits}
        for h in hits:
            rows[h.row] = h
        cand = [h.row for h in hits[:depth]]
        maxb = max((h.bm25 for h in hits), default=1.0) or 1.0
        items = []
        for r in cand:
            h = rows[r]
            spans, uv = gen.units_in(r)
            doc_row = int(gen.chunks[r][0])
            text = gen.text(doc_row)
            ut = retrieval.tokenize([text[a:b] for a, b in spans.tolist()])
            cos = uv.astype(np.float32) @ vec
            ov = np.array([weighted_overlap(qt, t, idf) for t in ut])
            ans = np.array([any(g in text[a:b] for g in q.answers) for a, b in spans.tolist()])
            items.append(
                (
                    gen.documents[doc_row].id == q.doc,
                    h.dense,
                    h.bm25 / maxb,
                    d_rank[r],
                    b_rank[r],
                    cos,
                    ov,
                    ans,
                )
            )
        out.append(items)
    return out


def score(feats, dw, rk, lw, sw, bw, cw):
    r1 = r5 = s1 = 0
    for items in feats:
        if not items:
            continue
        finals, bests = [], []
        for _gold, dense, bnorm, dr, br, cos, ov, _ans in items:
            rrf = (dw / (rk + dr) if dr else 0) + ((1 - dw) / (rk + br) if br else 0)
            g = cos + lw * ov
            b = int(np.argmax(g))
            bests.append(b)
            finals.append(sw * g[b] + bw * bnorm + cw * dense + rrf * 30)
        order = np.argsort(-np.array(finals), kind="stable")
        golds = [items[i][0] for i in order]
        r1 += golds[0]
        r5 += any(golds[:5])
        top = items[order[0]]
        s1 += bool(top[7][bests[order[0]]])
    n = len(feats)
    return r1 / n, r5 / n, s1 / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--squad", type=Path, default=ROOT.parent / "shared/eval/squad-v1.1-dev-first24.json")
    ap.add_argument("--work", type=Path, default=ROOT / ".eval-cache/squad")
    args = ap.parse_args()
    docs, questions = load_squad(args.squad)
    t = time.time()
    index = prepare_index(docs, args.work, Settings(), None)
    print(f"index ready in {time.time() - t:.0f}s: {len(index.generation.chunks)} chunks", flush=True)
    tune = [q for q in questions if int(q.doc[1:4]) < 12]
    hold = [q for q in questions if int(q.doc[1:4]) >= 12]
    t = time.time()
    ft, fh = features(index, tune), features(index, hold)
    print(f"features in {time.time() - t:.0f}s", flush=True)
    grid = list(
        itertools.product(
            [0.3, 0.5, 0.7],
            [60],
            [0.0, 0.3, 0.6, 1.0],
            [0.0, 0.5, 1.0],
            [0.0, 0.25, 0.5, 1.0],
            [0.0, 0.5, 1.0],
        )
    )
    results = []
    for p in grid:
        res = score(ft, *p)
        results.append((p, res))
    results.sort(key=lambda r: -(r[1][0] + r[1][2]))
    for p, res in results[:15]:
        print(
            json.dumps(
                {
                    "dense_weight": p[0],
                    "rrf_k": p[1],
                    "lexical": p[2],
                    "sentence": p[3],
                    "bm25": p[4],
                    "dense": p[5],
                    "tune": [round(x, 4) for x in res],
                }
            )
        )
    p = results[0][0]
    print("plain rrf only (tune/held-out):", score(ft, 0.5, 60, 0, 0, 0, 0), score(fh, 0.5, 60, 0, 0, 0, 0))
    print("chosen", p, "tune", results[0][1], "held-out", score(fh, *p))


if __name__ == "__main__":
    main()
