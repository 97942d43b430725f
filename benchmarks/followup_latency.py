"""What a follow-up question costs over a plain one, and what the answer stage costs, at 100k chunks.

Method: the scaled indexes of ``latency.py`` (SQuAD paragraphs replicated to 10k / 100k
chunks, real vectors plus noise; built in ``--work`` when missing, shared with
``latency.py``). Conversations are made from the shared SQuAD articles by
``../shared/eval/make_followups.py`` (the same generator as ``qa eval followups``). In one
process on ``--threads`` threads (torch, FAISS, BLAS), for every turn after the first, the
previous turn is asked (untimed, to have its Answer as history), then the turn is asked twice
in alternating order: with the history (``Index.ask(question, history=[...])``, what
``Conversation.ask`` does) and alone. Reported: p50/p95/p99 of both and of their difference
per question, over all follow-up turns and over those where the history changed the search
(``used_history``); and the embed / search / answer parts of the plain asks.

Target (issue 11): a follow-up costs at most 15 ms more than a plain question at p95 (100k).
Target (issues 9, 10): ``ask()`` p95 <= 50 ms at 100k chunks with the verifier and windows.

Run: python benchmarks/followup_latency.py [--quick] [--sizes 100000] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import latency

MAKE_FOLLOWUPS = common.SQUAD.parent / "make_followups.py"


def _conversations(limit: int) -> list[list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "followups.jsonl"
        subprocess.run([sys.executable, str(MAKE_FOLLOWUPS), str(common.SQUAD), str(out)], check=True)
        turns = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    convs: dict[int, list[dict[str, Any]]] = {}
    for t in turns:
        convs.setdefault(int(t["conversation"]), []).append(t)
    return [sorted(c, key=lambda t: int(t["turn"])) for c in list(convs.values())[:limit]]


def measure(index: Path, threads: int, limit: int) -> dict[str, Any]:
    import faiss

    import qa

    faiss.omp_set_num_threads(threads)
    idx = qa.Index.load(index, qa.Settings(threads=threads))
    convs = _conversations(limit)
    for q in ["warm up", *[c[0]["question"] for c in convs[:10]]]:
        idx.ask(q)
    plain, follow, extra, extra_used = [], [], [], []
    parts: dict[str, list[float]] = {"embed": [], "search": [], "answer": []}
    used = 0
    for n, conv in enumerate(convs):
        for prev, turn in itertools.pairwise(conv):
            history = [(prev["question"], idx.ask(prev["question"]))]
            runs: dict[str, tuple[float, Any]] = {}
            for mode in ("history", "alone") if n % 2 == 0 else ("alone", "history"):
                t = time.perf_counter()
                ans = idx.ask(turn["question"], history=history if mode == "history" else None)
                runs[mode] = (time.perf_counter() - t, ans)
            (th, ah), (ta, aa) = runs["history"], runs["alone"]
            follow.append(th)
            plain.append(ta)
            extra.append(th - ta)
            for k in parts:
                parts[k].append(aa.timings[k])
            if ah.used_history:
                used += 1
                extra_used.append(th - ta)
    return {
        "chunks": len(idx.generation.chunks),
        "threads": threads,
        "follow_up_turns": len(follow),
        "used_history": used,
        "plain_ms": common.percentiles(plain),
        "follow_up_ms": common.percentiles(follow),
        "extra_ms": common.percentiles(extra),
        "extra_when_history_used_ms": common.percentiles(extra_used),
        "plain_parts_ms": {k: common.percentiles(v) for k, v in parts.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5k chunks, 40 conversations")
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--conversations", type=int, default=150)
    ap.add_argument(
        "--work", type=Path, default=Path(os.environ.get("QA_BENCH_WORK", "/tmp/qa-bench-latency"))
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        res = measure(args.worker, args.threads, args.conversations)
        print(latency.MARK + json.dumps(res), flush=True)
        return
    common.set_threads_env(args.threads)
    sizes = [5000] if args.quick else [int(s) for s in args.sizes.split(",")]
    limit = 40 if args.quick else args.conversations
    work = args.work.with_name(args.work.name + "-quick") if args.quick else args.work
    work.mkdir(parents=True, exist_ok=True)
    base = latency.base_index(work, 100 if args.quick else None)
    load_before = common.loadavg()
    results = []
    for size in sizes:
        target = work / f"index-{size}"
        if not target.exists():
            latency.scaled_index(base, target, size)
        load = common.loadavg()
        print(f"{size} chunks (load {load}) ...", file=sys.stderr, flush=True)
        res = latency.run_worker(
            ["--worker", str(target), "--threads", str(args.threads), "--conversations", str(limit)],
            args.threads,
            __file__,
        )
        res.update(load_at_start=load, load_at_end=common.loadavg())
        results.append(res)
    rows = []
    for r in results:
        for name, key in (
            ("plain question", "plain_ms"),
            ("follow-up with history", "follow_up_ms"),
            ("difference, all follow-ups", "extra_ms"),
            (f"difference, history used ({r['used_history']}/{r['follow_up_turns']})",
             "extra_when_history_used_ms"),
        ):  # fmt: skip
            p = r[key]
            rows.append(
                [r["chunks"], name, p["p50"], p["p95"], p["p99"], f"{r['load_at_start']}→{r['load_at_end']}"]
            )
    text = common.table(["chunks", "ask()", "p50 ms", "p95 ms", "p99 ms", "load avg"], rows)
    print(text)
    path = common.save(
        "followup_latency", args.quick, {"method": __doc__, "results": results, "table": text}, load_before
    )
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
