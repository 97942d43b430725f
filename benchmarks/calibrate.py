"""Calibrate the "not found" threshold on data.

Index only articles 1-12 of the SQuAD dev slice. Questions about articles 1-12 are
answerable; questions about articles 13-24 are not (their paragraphs are not indexed).
For each threshold on the answer sentence's cosine, report the share of answerable
questions wrongly refused and of unanswerable questions rightly refused.

Run: python benchmarks/calibrate.py   (results: docs/tuning.md)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from qa import answering, retrieval
from qa.evaluation import load_squad, prepare_index
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def best_cosines(index, questions):
    """Cosine of the highlighted sentence of the top quote, per question."""
    gen = index.generation
    vecs = index.embedder.encode([q.question for q in questions])
    toks = retrieval.tokenize([q.question for q in questions])
    s = index.settings
    scoring = answering.Scoring(depth=s.rerank_depth, min_score=-1.0)
    idf = answering.idf_weights(gen)
    out = []
    for v, t in zip(vecs, toks, strict=True):
        hits = retrieval.search(gen, v, t, s.candidates, s.dense_weight, s.rrf_k)[: scoring.depth]
        scored = answering._rescore(t, gen, hits, v, idf, scoring)
        out.append(max(scored)[1] if scored else -1.0)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--squad", type=Path, default=ROOT.parent / "shared/eval/squad-v1.1-dev-first24.json")
    ap.add_argument("--work", type=Path, default=ROOT / ".eval-cache/squad-half")
    args = ap.parse_args()
    docs, questions = load_squad(args.squad)
    half = {d: t for d, t in docs.items() if int(d[1:4]) < 12}
    index = prepare_index(half, args.work, Settings(), None)
    ans = [q for q in questions if q.doc in half]
    una = [q for q in questions if q.doc not in half]
    ca, cu = best_cosines(index, ans), best_cosines(index, una)
    rows = []
    for th in np.arange(0.20, 0.62, 0.025):
        rows.append(
            {
                "threshold": round(float(th), 3),
                "answerable_refused": round(float((ca < th).mean()), 4),
                "unanswerable_refused": round(float((cu < th).mean()), 4),
                "balanced_accuracy": round(float(((ca >= th).mean() + (cu < th).mean()) / 2), 4),
            }
        )
        print(json.dumps(rows[-1]))
    best = max(rows, key=lambda r: r["balanced_accuracy"])
    print("best", best)
    print("answerable cos quantiles", np.quantile(ca, [0.05, 0.1, 0.25, 0.5]).round(3).tolist())
    print("unanswerable cos quantiles", np.quantile(cu, [0.5, 0.75, 0.9, 0.95]).round(3).tolist())


if __name__ == "__main__":
    main()
