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


def features(index, questions, depth=40):
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
            qb = set(itertools.pairwise(qt))
            bg = np.array([len(qb & set(itertools.pairwise(t))) / max(1, len(qb)) for t in ut])
            ans = np.array([any(g in text[a:b] for g in q.answers) for a, b in spans.tolist()])
            items.append(
                (
                    gen.documents[doc_row].id == q.doc,
                    h.dense,
                    h.bm25 / maxb,
                    d_rank[r],
                    b_rank[r],
                    cos,
                    (ov, bg),
                    ans,
                    weighted_overlap(qt, [w for t in ut for w in t], idf),
                )
            )
        out.append(items)
    return out


LEXICAL = tuple((lw, bw) for lw in (0.3, 0.45, 0.6, 0.8) for bw in (0.0, 0.2, 0.4))


def tensors(feats, depth=40):
    """Pad per-question candidate lists into (questions, depth) arrays, one per feature."""
    q = len(feats)
    z = lambda dt=np.float32: np.zeros((q, depth), dtype=dt)  # noqa: E731
    t = {"mask": z(bool), "gold": z(bool), "dense": z(), "bnorm": z(), "dr": z(), "br": z(), "whole": z()}
    t["g2"] = {lw: z() for lw in LEXICAL}
    t["g"] = {lw: z() for lw in LEXICAL}
    t["ans"] = {lw: z(bool) for lw in LEXICAL}
    for i, items in enumerate(feats):
        for j, (gold, dense, bnorm, dr, br, cos, ov, ans, whole) in enumerate(items[:depth]):
            t["mask"][i, j], t["gold"][i, j], t["dense"][i, j], t["bnorm"][i, j] = True, gold, dense, bnorm
            t["dr"][i, j], t["br"][i, j], t["whole"][i, j] = dr, br, whole
            ov, bg = ov
            for lw in LEXICAL:
                g = cos + lw[0] * ov + lw[1] * bg
                b = int(np.argmax(g))
                t["g"][lw][i, j] = g[b]
                t["g2"][lw][i, j] = np.sort(g)[-2] if len(g) > 1 else g[b]
                t["ans"][lw][i, j] = ans[b]
    return t


def score(t, dw, rk, lw, sw, bw, cw, fw=30.0, hw=None, ww=0.0, s2=0.0):
    """(passage recall@1, recall@5, answer-sentence accuracy@1) of one weighting."""
    hw = lw if hw is None else hw
    rrf = np.where(t["dr"] > 0, dw / (rk + t["dr"]), 0) + np.where(t["br"] > 0, (1 - dw) / (rk + t["br"]), 0)
    final = (
        sw * t["g"][lw] + bw * t["bnorm"] + cw * t["dense"] + fw * rrf + ww * t["whole"] + s2 * t["g2"][lw]
    )
    final = np.where(t["mask"], final, -np.inf)
    order = np.argsort(-final, axis=1, kind="stable")
    rows = np.arange(len(final))[:, None]
    gold = t["gold"][rows, order]
    top = order[:, 0]
    r = np.arange(len(final))
    return float(gold[:, 0].mean()), float(gold[:, :5].any(axis=1).mean()), float(t["ans"][hw][r, top].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--squad", type=Path, default=ROOT.parent / "shared/eval/squad-v1.1-dev-first24.json")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--chunk-tokens", type=int, default=200)
    args = ap.parse_args()
    args.work = args.work or ROOT / f".eval-cache/squad-{args.chunk_tokens}"
    docs, questions = load_squad(args.squad)
    t = time.time()
    index = prepare_index(docs, args.work, Settings(chunk_tokens=args.chunk_tokens), None)
    print(f"index ready in {time.time() - t:.0f}s: {len(index.generation.chunks)} chunks", flush=True)
    tune = [q for q in questions if int(q.doc[1:4]) < 12]
    hold = [q for q in questions if int(q.doc[1:4]) >= 12]
    t = time.time()
    ft, fh = tensors(features(index, tune)), tensors(features(index, hold))
    print(f"features in {time.time() - t:.0f}s", flush=True)
    names = [
        "dense_weight",
        "rrf_k",
        "lexical",
        "sentence",
        "bm25",
        "dense",
        "fused",
        "highlight_lexical",
        "chunk_overlap",
        "second_sentence",
    ]
    grid = itertools.product(
        [0.3], [60], LEXICAL, [1.0], [0.0], [0.0, 0.25], [0.0, 15.0], LEXICAL, [0.15, 0.25, 0.35, 0.5], [0.0]
    )
    results = [(p, score(ft, *p)) for p in grid]
    results.sort(key=lambda r: -(r[1][0] + r[1][2]))
    for p, res in results[:15]:
        print(json.dumps({**dict(zip(names, p, strict=True)), "tune": [round(x, 4) for x in res]}))
    p = results[0][0]
    for name, p0 in {
        "dense only": (1.0, 60, LEXICAL[0], 0, 0, 0, 30.0),
        "bm25 only": (0.0, 60, LEXICAL[0], 0, 0, 0, 30.0),
        "plain rrf": (0.5, 60, LEXICAL[0], 0, 0, 0, 30.0),
    }.items():
        print(name, "(fused order; tune / held-out):", score(ft, *p0), score(fh, *p0))
    print("chosen", dict(zip(names, p, strict=True)), "tune", results[0][1], "held-out", score(fh, *p))
    print("all questions", score(merge(ft, fh), *p))


def merge(a, b):
    out = {}
    for k, v in a.items():
        out[k] = (
            {x: np.concatenate([v[x], b[k][x]]) for x in v}
            if isinstance(v, dict)
            else np.concatenate([v, b[k]])
        )
    return out


if __name__ == "__main__":
    main()
