"""Incremental update vs full rebuild: change 1% of the documents, rebuild, compare times.

Method: N SQuAD dev paragraphs (or SciFact abstracts) are written as .txt files and indexed
once with the real model (one process, model loaded before any clock starts). Then, for each
of ``--rounds`` rounds, 1% of the documents (at least one, a different random set each round)
get one sentence edited: the middle sentence of the paragraph gains a word ("indeed") before
its last character. ``qa.build_index`` then updates the index and its wall time and
BuildReport (chunks embedded vs reused, seconds per stage) are recorded. A rebuild with no
change at all is timed too (the fixed cost: hashing files, loading the previous generation,
BM25 and writing). Finally ``build_index(full=True)`` re-embeds the same corpus from scratch.

Target: the 1% update takes <= 3% of the full build time (median over rounds).
One incremental round also runs under cProfile; its top functions go into the results.

Run: python benchmarks/incremental.py [--quick] [--docs N] [--dataset squad|scifact] [--threads 1]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common


def edit_one_sentence(text: str) -> str:
    """Insert " indeed" before the last character of the middle sentence."""
    from qa.chunking import split_sentences

    spans = split_sentences(text)
    _, b = spans[len(spans) // 2]
    return text[: b - 1] + " indeed" + text[b - 1 :]


def timed_build(corpus: Path, index: Path, settings: Any, embedder: Any, full: bool) -> dict[str, Any]:
    import qa

    t0 = time.perf_counter()
    report = qa.build_index(corpus, index, full=full, settings=settings, embedder=embedder)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "stages_s": {k: round(v, 4) for k, v in report.seconds.items()},
        "chunks": report.chunks,
        "chunks_embedded": report.chunks_embedded,
        "chunks_reused": report.chunks_reused,
        "changed": len(report.changed),
        "added": len(report.added),
    }


def profile_build(corpus: Path, index: Path, settings: Any, embedder: Any) -> tuple[dict[str, Any], str]:
    prof = cProfile.Profile()
    prof.enable()
    res = timed_build(corpus, index, settings, embedder, False)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
    return res, buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 documents, 2 rounds")
    ap.add_argument("--dataset", choices=("squad", "scifact"), default="squad")
    ap.add_argument("--docs", type=int, default=None, help="documents (default: all of the dataset)")
    ap.add_argument("--percent", type=float, default=1.0, help="share of documents edited per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--wait-load", type=float, default=0.0, help="wait until the load average is below this")
    ap.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --wait-load, seconds")
    args = ap.parse_args()
    common.set_threads_env(args.threads)

    import qa
    from qa.building import build_embedder
    from qa.evaluation import load_beir, load_squad

    n_docs = 100 if args.quick and args.docs is None else args.docs
    rounds = 2 if args.quick else args.rounds
    if args.dataset == "squad":
        docs, _ = load_squad(common.SQUAD)
    else:
        docs = load_beir(common.SCIFACT)[0]
    docs = dict(list(docs.items())[:n_docs])
    names = {d: d if d.endswith(".txt") else f"{d}.txt" for d in docs}
    work = args.work or Path(tempfile.mkdtemp(prefix="qa-bench-incr-"))
    corpus, index = work / "corpus", work / "index"
    shutil.rmtree(work / "corpus", ignore_errors=True)
    shutil.rmtree(work / "index", ignore_errors=True)
    corpus.mkdir(parents=True)
    for d, text in docs.items():
        (corpus / names[d]).write_text(text, encoding="utf-8")

    settings = qa.Settings(chunk_tokens=200, threads=args.threads)
    embedder = build_embedder(settings, threads=settings.threads)
    embedder._load()  # private: model loaded before any clock starts
    if args.wait_load:
        common.wait_for_quiet(args.wait_load, args.max_wait)
    load_before = common.loadavg()
    print(f"initial build of {len(docs)} documents (load {load_before}) ...", file=sys.stderr, flush=True)
    initial = timed_build(corpus, index, settings, embedder, False)
    print(f"  {initial['wall_s']:.1f}s, {initial['chunks']} chunks", file=sys.stderr, flush=True)

    rng = random.Random(args.seed)
    k = max(1, round(len(docs) * args.percent / 100))
    current = dict(docs)
    noop = timed_build(corpus, index, settings, embedder, False)
    updates = []
    profile_text = ""
    for r in range(rounds + 1):  # the last round runs under cProfile and is not in the median
        picked = rng.sample(sorted(current), k)
        for d in picked:
            current[d] = edit_one_sentence(current[d])
            (corpus / names[d]).write_text(current[d], encoding="utf-8")
        if r < rounds:
            res = timed_build(corpus, index, settings, embedder, False)
            res["load"] = common.loadavg()
            updates.append(res)
        else:
            profiled, profile_text = profile_build(corpus, index, settings, embedder)
        print(f"  round {r}: {k} docs edited", file=sys.stderr, flush=True)
    print("full rebuild ...", file=sys.stderr, flush=True)
    full = timed_build(corpus, index, settings, embedder, True)
    full["load"] = common.loadavg()

    median = statistics.median(u["wall_s"] for u in updates)
    ratio = median / full["wall_s"]

    def row(name: str, edited: Any, r: dict[str, Any]) -> list[Any]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items() if k != "total")
        return [
            name,
            len(docs),
            edited,
            round(r["wall_s"], 2),
            r["chunks_embedded"],
            r["chunks_reused"],
            stages,
        ]

    rows = [
        row("initial build (empty index)", "-", initial),
        row("rebuild, nothing changed", 0, noop),
        *[row(f"update round {i + 1}", k, u) for i, u in enumerate(updates)],
        row("full rebuild (full=True)", "all", full),
    ]
    text = common.table(["build", "docs", "edited", "seconds", "embedded", "reused", "stages (s)"], rows)
    text += (
        f"\n\nmedian update {median:.2f}s = {100 * ratio:.2f}% of the full build "
        f"({full['wall_s']:.1f}s); target ≤ 3%: {'met' if ratio <= 0.03 else 'NOT met'}"
    )
    print(text)
    path = common.save(
        "incremental",
        args.quick,
        {
            "method": __doc__,
            "dataset": args.dataset,
            "documents": len(docs),
            "edited_per_round": k,
            "threads": args.threads,
            "initial": initial,
            "noop": noop,
            "updates": updates,
            "profiled_update": profiled,
            "full": full,
            "median_update_s": median,
            "update_over_full": ratio,
            "target": "update <= 3% of the full build time",
            "target_met": ratio <= 0.03,
            "profile_top_cumulative": profile_text,
            "table": text,
        },
        load_before,
    )
    print(f"\nresults: {path}", file=sys.stderr)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
