"""Fit the answer verifier (qa/models/verifier.json) on the shared SQuAD data.

Data, all through qa's own pipeline (``answering.analyse``: the same ranking, answer window
and evidence a user's question gets):

* SQuAD 2.0 dev, 8 articles (``../shared/eval/squad-v2.0-dev-8-articles.json``), every
  paragraph indexed: 1,408 answerable questions and 1,621 near-miss unanswerable ones;
* off-topic questions: SQuAD v1.1 questions of the other 16 articles of
  ``../shared/eval/squad-v1.1-dev-first24.json``, asked against that same index (their
  articles are not in it), a sample of ``--off-topic`` of them.

Label: the question is answerable from the index (``--label answerable``, default) or the shown
answer window contains a gold answer (``--label shown``). Model: logistic regression over
``verification.features``. Scores are measured held out by article (two folds: each half of the
titles is scored by a model fitted on the other half); the threshold is the largest that keeps
answerable questions wrongly refused at or below ``--max-refused`` on the held-out scores. The
shipped file is then fitted on everything.

Run: python benchmarks/train_verifier.py [--out qa/models/verifier.json]   (~10 min here)
Needs scikit-learn (installed with sentence-transformers; never imported by qa itself).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from qa import answering, retrieval, verification
from qa.evaluation import load_squad, prepare_index
from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "eval"


def collect(index, questions, titles, progress=True):
    """Features and facts of each question's best answer, through the answer stage itself."""
    gen = index.generation
    rows = []
    vecs = index.embedder.encode([q.question for q in questions])
    s = index.settings
    t0 = time.time()
    for i, (q, vec) in enumerate(zip(questions, vecs, strict=True)):
        hits = retrieval.search(
            gen, vec, retrieval.tokenize([q.question])[0], s.candidates, s.dense_weight, s.rrf_k
        )
        chosen = hits[: index.scoring.depth]
        if not chosen:
            continue
        ranked, window = answering.analyse(q.question, gen, chosen, vec, index.scoring)
        top_doc = gen.documents[int(gen.chunks[ranked[0][3].row][0])].id
        a, b = window.span
        text = gen.text(int(gen.chunks[ranked[0][3].row][0]))
        shown = text[a:b]
        rows.append(
            {
                "id": q.id,
                "title": titles[q.doc],
                "answerable": not q.impossible,
                "right_doc": top_doc == q.doc,
                "shown": (not q.impossible) and top_doc == q.doc and any(g in shown for g in q.answers),
                "features": verification.features(window.evidence),
            }
        )
        if progress and i % 500 == 0:
            print(f"  {i}/{len(questions)} {time.time() - t0:.0f}s", file=sys.stderr)
    return rows


def topical_near_misses(v1: Path, work: Path, settings: Settings) -> list[dict]:
    """Questions whose article is indexed but whose paragraph is not: SQuAD v1.1 with only the
    even paragraphs of each article indexed. A question about an odd paragraph is about the
    documents' subject, with the same names, but the documents do not answer it (the kind of
    near miss people ask about their own files); questions about even paragraphs are
    answerable."""
    docs, questions = load_squad(v1)
    kept = {d: text for d, text in docs.items() if int(d.split("-p")[1][:3]) % 2 == 0}
    index = prepare_index(kept, work / (v1.stem + "-even-paragraphs"), settings, None)
    titles = article_titles(v1)
    marked = [q if q.doc in kept else type(q)(q.id, q.question, q.doc, (), True) for q in questions]
    rows = collect(index, marked, titles)
    for r in rows:
        r["title"] = "v1:" + r["title"]
        r["topical"] = True
    return rows


def article_titles(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {
        f"a{a:03d}-p{p:03d}.txt": art["title"]
        for a, art in enumerate(data)
        for p in range(len(art["paragraphs"]))
    }


# Evidence that can only make an answer more likely (+) or less likely (-): the fitted weights
# are held to these signs, a prior that generalises beyond the data set (a near-miss cue must
# never count in favour of an answer because of a correlation in SQuAD).
SIGNS = {
    "sentence_cos": 1,
    "passage_cos": 1,
    "score": 1,
    "margin": 1,
    "sentence_overlap": 1,
    "sentence_bigram": 1,
    "type_in_sentence": 1,
    "type_in_window": 1,
    "missing_sentence": -1,
    "missing_window": -1,
    "missing_passage": -1,
    "missing_window_max": -1,
    "missing_passage_max": -1,
    "name_missing_window": -1,
    "name_missing_passage": -1,
    "number_missing_window": -1,
    "number_missing_passage": -1,
    "negation_question_only": -1,
    "negation_answer_only": -1,
    "antonym": -1,
    "dense_rank": -1,
    "bm25_rank": -1,
    "fused_rank": -1,
    "heading": -1,
}
C = 1.0  # inverse L2 strength, as scikit-learn's default


def fit(X, y, names, c=C):
    """Logistic regression on standardised features, weights held to ``SIGNS`` (L-BFGS-B);
    ``c`` is the inverse L2 strength."""
    from scipy.optimize import minimize

    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    t = np.asarray(y, dtype=float)
    bounds = [
        (0.0, None) if SIGNS.get(n) == 1 else (None, 0.0) if SIGNS.get(n) == -1 else (None, None)
        for n in names
    ] + [(None, None)]

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        z = Z @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(np.logaddexp(0.0, z) - t * z) + 0.5 / c * (w @ w)
        grad_w = Z.T @ (p - t) + w / c
        return nll, np.r_[grad_w, np.sum(p - t)]

    res = minimize(loss, np.zeros(Z.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return mean, scale, res.x[:-1], float(res.x[-1])


def predict(params, X):
    mean, scale, w, b = params
    return 1.0 / (1.0 + np.exp(-(((X - mean) / scale) @ w + b)))


def ece(p, correct, bins=10):
    """Expected calibration error of probabilities ``p`` against 0/1 ``correct``."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return float(
        sum(
            abs(p[which == b].mean() - correct[which == b].mean()) * np.mean(which == b)
            for b in range(bins)
            if np.any(which == b)
        )
    )


def auc(pos, neg):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--v2", type=Path, default=SHARED / "squad-v2.0-dev-8-articles.json")
    ap.add_argument("--v1", type=Path, default=SHARED / "squad-v1.1-dev-first24.json")
    ap.add_argument("--work", type=Path, default=ROOT / ".eval-cache")
    ap.add_argument("--off-topic", type=int, default=1500, help="off-topic questions sampled")
    ap.add_argument("--label", choices=["answerable", "shown"], default="answerable")
    ap.add_argument("--max-refused", type=float, default=0.10)
    ap.add_argument("--drop", default="", help="comma-separated features to leave out")
    ap.add_argument("--cache", type=Path, default=None, help="JSONL of collected rows (reused if present)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    settings = Settings()
    if a.cache is not None and a.cache.exists():
        rows = [json.loads(line) for line in a.cache.read_text().splitlines()]
    else:
        docs, questions = load_squad(a.v2)
        index = prepare_index(docs, a.work / a.v2.stem, settings, None)
        titles = article_titles(a.v2)
        rows = collect(index, questions, titles)
        v2_titles = set(titles.values())
        _, v1q = load_squad(a.v1)
        v1_titles = article_titles(a.v1)
        off = [q for q in v1q if v1_titles[q.doc] not in v2_titles]
        random.Random(0).shuffle(off)
        off = off[: a.off_topic]
        # off-topic: their paragraphs are not indexed; mark them unanswerable
        off = [type(q)(q.id, q.question, "(not indexed)", (), True) for q in off]
        titles["(not indexed)"] = "(off-topic)"
        off_rows = collect(index, off, titles)
        for r in off_rows:
            r["title"] = "(off-topic)"
            r["off_topic"] = True
        rows += off_rows
        rows += topical_near_misses(a.v1, a.work, settings)
        if a.cache is not None:
            a.cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    drop = set(filter(None, a.drop.split(",")))
    names = [n for n in rows[0]["features"] if n not in drop]
    X = np.array([[r["features"][n] for n in names] for r in rows])
    y = np.array([r["answerable"] if a.label == "answerable" else r["shown"] for r in rows])
    answerable = np.array([r["answerable"] for r in rows])
    off = np.array([bool(r.get("off_topic")) for r in rows])
    # Two folds by article (a v1.1 question and a v2.0 question of one article share a fold);
    # off-topic questions are split at random.
    article = [r["title"].removeprefix("v1:") for r in rows]
    titles = sorted({t for t in article if t != "(off-topic)"})
    folds = [set(titles[0::2]), set(titles[1::2])]
    held = np.zeros(len(rows))
    off_fold = np.random.default_rng(0).integers(0, 2, len(rows))
    for k, fold in enumerate(folds):
        test = np.array(
            [t in fold or (t == "(off-topic)" and off_fold[i] == k) for i, t in enumerate(article)]
        )
        held[test] = predict(fit(X[~test], y[~test], names), X[test])
    topical = np.array([bool(r.get("topical")) for r in rows])
    near = ~answerable & ~off & ~topical
    v2_answerable = answerable & ~topical
    # Calibration: "the shown answer contains a correct answer" against the held-out score.
    shown = np.array([r["shown"] for r in rows], dtype=float)
    logit = np.log(held / (1 - held))
    mu, sd, (slope,), intercept = fit(logit.reshape(-1, 1), shown, ["z"], c=1e6)
    slope, intercept = slope / sd[0], intercept - slope * mu[0] / sd[0]  # back to raw logits
    calibrated = 1 / (1 + np.exp(-(slope * logit + intercept)))
    held = calibrated  # every rate below is of the calibrated confidence (same order)
    ans_scores = np.sort(held[v2_answerable])
    threshold = float(ans_scores[int(a.max_refused * len(ans_scores))])
    report = {
        "label": a.label,
        "held_out_by_article": {
            "auc_answerable_vs_near_miss": auc(held[v2_answerable], held[near]),
            "auc_topical": auc(held[answerable & topical], held[~answerable & topical]),
            "auc_answerable_vs_off_topic": auc(held[answerable], held[off]),
            "threshold": threshold,
            "answerable_refused": float(np.mean(held[v2_answerable] < threshold)),
            "near_miss_refused": float(np.mean(held[near] < threshold)),
            "topical_answerable_refused": float(np.mean(held[answerable & topical] < threshold)),
            "topical_near_miss_refused": float(np.mean(held[~answerable & topical] < threshold)),
            "off_topic_refused": float(np.mean(held[off] < threshold)),
        },
        "calibration": {"slope": float(slope), "intercept": float(intercept), "ece": ece(held, shown)},
        "questions": {
            "answerable": int(v2_answerable.sum()),
            "near_miss": int(near.sum()),
            "off_topic": int(off.sum()),
            "topical_answerable": int((answerable & topical).sum()),
            "topical_near_miss": int((~answerable & topical).sum()),
        },
    }
    print(json.dumps(report, indent=1))
    params = fit(X, y, names)
    for n, w in sorted(zip(names, params[2], strict=True), key=lambda t: -abs(t[1])):
        print(f"  {n:26s} {w:+.3f}", file=sys.stderr)
    if a.out is not None:
        mean, scale, w, b = params
        v = verification.Verifier(
            name=f"logistic-{a.label}-v1",
            names=tuple(names),
            mean=mean,
            scale=scale,
            weights=w,
            bias=b,
            threshold=threshold,
            slope=float(slope),
            intercept=float(intercept),
            meta={
                "fitted_on": [a.v2.name, f"{a.v1.name} (off-topic questions of the other 16 articles)"],
                "embedding_model": index_model_name(),
                "script": "benchmarks/train_verifier.py",
                "scores": report,
            },
        )
        v.save(a.out)
        print(f"wrote {a.out}", file=sys.stderr)


def index_model_name() -> str:
    from qa.embedding import DEFAULT_MODEL_NAME

    return DEFAULT_MODEL_NAME


if __name__ == "__main__":
    main()
