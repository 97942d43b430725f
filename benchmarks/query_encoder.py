"""Same answers with the numpy question encoder as with sentence-transformers, on every eval set.

Method: each evaluation set is indexed once (``qa.evaluation.prepare_index``, default
settings: chunks embedded by sentence-transformers as in any build; kept in ``--work``). The
index is then opened twice, once with ``QA_QUERY_ENCODER=numpy`` and once with
``sentence-transformers``, and every question of the set is asked of both (``Index.ask``,
default k). Two answers are identical when found/not found, the answer sentence and every
quote's document, offsets, location, text and highlight are equal. Also recorded: the
cosine distance between the two encoders' vectors of each question and the largest score
difference between paired quotes.

Sets (``../shared/eval``): SQuAD v1.1 dev first 24 articles (5,696 questions), SQuAD 2.0 dev
8 articles (3,029 questions, half unanswerable), SciFact test claims (300, BEIR layout).

Run: python benchmarks/query_encoder.py [--quick] [--sets squad,squad2,scifact]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

SQUAD2 = Path(os.environ.get("QA_BENCH_SQUAD2", str(common.SQUAD.parent / "squad-v2.0-dev-8-articles.json")))


def _key(answer: Any) -> tuple[Any, ...]:
    return (
        answer.found,
        answer.answer,
        [(q.doc, q.start, q.end, q.location, q.text, q.highlight) for q in answer.quotes],
    )


def compare(name: str, docs: dict[str, str], questions: list[str], work: Path) -> dict[str, Any]:
    import numpy as np

    import qa
    from qa.evaluation import prepare_index

    t0 = time.perf_counter()
    prepare_index(docs, work / name, qa.Settings(), None)
    build_s = time.perf_counter() - t0
    fast = qa.Index.load(work / name / "index", qa.Settings(query_encoder="numpy"))
    slow = qa.Index.load(work / name / "index", qa.Settings(query_encoder="sentence-transformers"))
    differ, distances, score_diff = [], [], 0.0
    for question in questions:
        a, b = fast.ask(question), slow.ask(question)
        if _key(a) != _key(b):
            differ.append(question)
        q = " ".join(question.split())
        va, vb = fast.embedder.encode([q])[0], slow.embedder.encode([q])[0]
        distances.append(1.0 - float(va @ vb))
        for x, y in zip(a.quotes, b.quotes, strict=False):
            score_diff = max(score_diff, abs(x.score - y.score))
    d = np.array(distances)
    return {
        "set": name,
        "documents": len(docs),
        "questions": len(questions),
        "identical": len(questions) - len(differ),
        "differ": differ[:50],
        "cosine_distance": {
            "max": float(d.max()),
            "mean": float(d.mean()),
            "p99": float(np.quantile(d, 0.99)),
        },
        "max_quote_score_difference": score_diff,
        "build_s": round(build_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first 200 questions of each set")
    ap.add_argument("--sets", default="squad,squad2,scifact")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("QA_BENCH_WORK_QE", "/tmp/qa-bench-qe")))
    args = ap.parse_args()
    common.set_threads_env(1)
    from qa.evaluation import load_beir, load_squad

    limit = 200 if args.quick else None
    load_before = common.loadavg()
    results = []
    for name in args.sets.split(","):
        if name == "squad":
            docs, qs = load_squad(common.SQUAD)
            questions = [q.question for q in qs]
        elif name == "squad2":
            docs, qs = load_squad(SQUAD2)
            questions = [q.question for q in qs]
        elif name == "scifact":
            docs, queries, qrels = load_beir(common.SCIFACT)
            questions = [queries[qid] for qid in qrels if qid in queries]
        else:
            raise SystemExit(f"unknown set {name!r}")
        print(
            f"{name}: {len(docs)} documents, {len(questions[:limit])} questions ...",
            file=sys.stderr,
            flush=True,
        )
        res = compare(name, docs, questions[:limit], args.work)
        res["load_after"] = common.loadavg()
        results.append(res)
        print(f"  identical {res['identical']}/{res['questions']}", file=sys.stderr, flush=True)
    text = common.table(
        ["set", "documents", "questions", "identical answers", "max cosine distance", "max score difference"],
        [
            [r["set"], r["documents"], r["questions"], r["identical"], f"{r['cosine_distance']['max']:.2e}",
             f"{r['max_quote_score_difference']:.2e}"]
            for r in results
        ],
    )  # fmt: skip
    print(text)
    path = common.save(
        "query_encoder", args.quick, {"method": __doc__, "results": results, "table": text}, load_before
    )
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
