"""Choose one set of answer-stage weights for both data sets.

Scores every weighting on SQuAD articles 1-12 (passage recall@1, answer-sentence accuracy@1)
and on SciFact train queries (nDCG@10), picks the best sum recall@1 + nDCG@10 among those
within one point of the best SQuAD accuracy@1, then reports SQuAD articles 13-24 and SciFact
test for that choice. Run: python benchmarks/tune_joint.py   (results: docs/tuning.md)
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tune
import tune_beir

from qa.evaluation import load_beir, load_squad, prepare_index
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval"


def main() -> None:
    t0 = time.time()
    docs, questions = load_squad(SHARED / "squad-v1.1-dev-first24.json")
    squad = prepare_index(docs, ROOT / ".eval-cache/squad-200", Settings(), None)
    tune_q = [q for q in questions if int(q.doc[1:4]) < 12]
    hold_q = [q for q in questions if int(q.doc[1:4]) >= 12]
    s_tune, s_hold = tune.tensors(tune.features(squad, tune_q)), tune.tensors(tune.features(squad, hold_q))
    bdocs, bq, train = load_beir(SHARED / "scifact/beir", "train")
    _, _, test = load_beir(SHARED / "scifact/beir", "test")
    sci = prepare_index(bdocs, ROOT / ".eval-cache/scifact", Settings(), None)
    b_train, b_test = tune_beir.features(sci, bq, train), tune_beir.features(sci, bq, test)
    print(f"features in {time.time() - t0:.0f}s", flush=True)
    lex = [k for k in tune.LEXICAL if k in tune_beir.LEX]
    rows = []
    for dw, lw, ww, fw, cw in itertools.product(
        [0.3, 0.5], lex, [0.15, 0.5, 1.0], [0.0, 15.0], [0.0, 0.5, 1.0]
    ):
        r1, r5, s1 = tune.score(s_tune, dw, 60, lw, 1.0, 0.0, cw, fw, (0.6, 0.0), ww, 0.0)
        nd = tune_beir.ndcg(b_train, dw, lw, ww, fw, cw)
        rows.append(
            {
                "dense_weight": dw,
                "lexical": lw,
                "chunk_overlap": ww,
                "fused": fw,
                "dense": cw,
                "squad_r1": r1,
                "squad_r5": r5,
                "squad_s1": s1,
                "scifact_ndcg": nd,
            }
        )
    best_s1 = max(r["squad_s1"] for r in rows)
    pool = [r for r in rows if r["squad_s1"] >= best_s1 - 0.01]
    pool.sort(key=lambda r: -(r["squad_r1"] + r["scifact_ndcg"]))
    for r in pool[:10]:
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
    c = pool[0]
    args = (
        c["dense_weight"],
        60,
        c["lexical"],
        1.0,
        0.0,
        c["dense"],
        c["fused"],
        (0.6, 0.0),
        c["chunk_overlap"],
        0.0,
    )
    print("chosen, SQuAD 13-24:", tune.score(s_hold, *args))
    print("chosen, SQuAD all:", tune.score(tune.merge(s_tune, s_hold), *args))
    print(
        "chosen, SciFact test nDCG@10:",
        tune_beir.ndcg(b_test, c["dense_weight"], c["lexical"], c["chunk_overlap"], c["fused"], c["dense"]),
    )


if __name__ == "__main__":
    main()
