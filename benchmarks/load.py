"""Load on the web app with the real model: 16 API clients while rebuilds swap generations.

Method: a temp copy of the default corpus plus ``--reports`` generated reports (40 sentences
each) is indexed with the bundled MiniLM. The server process holds the app exactly as
``create_app(settings)`` builds it (two model instances from ``get_embedder``: "query" for
questions, "build" for rebuilds; built here from the same calls so the benchmark keeps the
``QAService`` to trigger rebuilds) and serves it with ``launch`` on a free 127.0.0.1 port.
A separate process runs ``--clients`` ``gradio_client`` clients in threads, each asking
``--questions`` questions through ``/ask`` (5 questions cycled: about the default document,
the generated reports and a document that comes and goes). Meanwhile a thread of the server
process alternately adds and removes that document and rebuilds through
``QAService.start_rebuild()`` (incremental, ``--pause`` s between rebuilds, at most
``--max-rebuilds``); each client's 3rd and later questions wait for the first swap and its 5th
and later for the second, so at least two swaps happen under load.

Latency is measured by each client around ``predict`` (queueing included). Every answer is
checked against the generation it names (quotes' documents exist there and the quote is that
document's text at start:end); failures and inconsistent answers are counted.

Run: python benchmarks/load.py [--clients 16] [--questions 5] [--reports 40]
Writes benchmarks/results/load.json (machine, load average before and after, versions).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as common

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.helpers.load_scenario import QUESTIONS, TOGGLED, toggle_document, write_reports  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------------- clients


def run_clients(url: str, clients: int, questions: int, swaps: Any, ready: Any, go: Any, out: Any) -> None:
    """The client process: ``clients`` threads, each asking ``questions`` questions."""
    from gradio_client import Client

    conns = [Client(url, verbose=False) for _ in range(clients)]
    ready.set()
    go.wait(600)
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    lock = threading.Lock()

    def wait_swaps(n: int) -> None:
        deadline = time.monotonic() + 600
        while swaps.value < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def one(i: int, client: Client) -> None:
        for j in range(questions):
            try:
                wait_swaps(0 if j < 2 else 1 if j < 4 else 2)
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                t0 = time.monotonic()
                res = client.predict(q, 3, api_name="/ask")
                t1 = time.monotonic()
                with lock:
                    results.append({"client": i, "question": q, "t0": t0, "t1": t1, "answer": res})
            except Exception as exc:
                with lock:
                    failures.append(f"client {i} question {j}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=one, args=(i, c), daemon=True) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1800)
    out.put({"results": results, "failures": failures})


# ---------------------------------------------------------------------------------- server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--questions", type=int, default=5, help="questions per client")
    ap.add_argument("--reports", type=int, default=40, help="generated documents added to the corpus")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between rebuilds")
    ap.add_argument("--max-rebuilds", type=int, default=15)
    ap.add_argument("--max-load", type=float, default=3.0, help="wait until the 1-min load is below")
    ap.add_argument("--max-wait", type=float, default=300.0, help="at most this long (s)")
    ap.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = ap.parse_args()

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from qa import store
    from qa.app import DEFAULT_CONCURRENCY, QUEUE_SIZE, build_ui, launch
    from qa.building import build_embedder, build_index
    from qa.embedding import get_embedder
    from qa.service import QAService
    from qa.settings import Settings

    deadline = time.monotonic() + args.max_wait
    while os.getloadavg()[0] > args.max_load and time.monotonic() < deadline:
        time.sleep(10)
    load_before = common.loadavg()
    print(f"load average before: {load_before}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="qa-load-") as tmpdir:
        tmp = Path(tmpdir)
        corpus = tmp / "corpus"
        shutil.copytree(ROOT / "corpus", corpus)
        write_reports(corpus, args.reports)
        settings = Settings(corpus=corpus, index=tmp / "index", keep_generations=20)
        query = get_embedder(settings.model, settings.threads, settings.batch_size)
        build = build_embedder(settings, threads=settings.threads)
        t = time.perf_counter()
        first = build_index(settings, embedder=build)
        first_build_s = time.perf_counter() - t
        service = QAService(settings, query, build)
        app = build_ui(service)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        launch(app, settings, port=port, prevent_thread_lock=True, quiet=True)
        service.ask(QUESTIONS[0])  # warm: model loaded, index opened
        url = f"http://127.0.0.1:{port}/"

        ctx = mp.get_context("spawn")
        swaps, ready, go, out = ctx.Value("i", 0), ctx.Event(), ctx.Event(), ctx.Queue()
        stop = threading.Event()
        windows: list[tuple[float, float]] = []
        rebuild_s: list[float] = []
        build_errors: list[str] = []

        def rebuilds() -> None:
            try:
                for n in range(args.max_rebuilds):
                    if stop.is_set():
                        break
                    toggle_document(corpus, n)
                    t0 = time.monotonic()
                    if service.start_rebuild() is None:
                        build_errors.append("start_rebuild refused")
                        break
                    st = service.wait_build(600)
                    t1 = time.monotonic()
                    if st.running or st.error or st.report is None:
                        build_errors.append(f"rebuild {n}: {st.error or 'did not finish'}")
                        break
                    windows.append((t0, t1))
                    rebuild_s.append(t1 - t0)
                    with swaps.get_lock():
                        swaps.value += 1
                    stop.wait(args.pause)
            finally:
                with swaps.get_lock():
                    swaps.value += 1000  # release waiting clients

        child = ctx.Process(
            target=run_clients, args=(url, args.clients, args.questions, swaps, ready, go, out)
        )
        child.start()
        try:
            if not ready.wait(600):
                raise RuntimeError("clients did not connect")
            driver = threading.Thread(target=rebuilds, daemon=True)
            started = time.monotonic()
            driver.start()
            go.set()
            got = out.get(timeout=3600)
            elapsed = time.monotonic() - started
            child.join(60)
            stop.set()
            driver.join(600)
        finally:
            stop.set()
            if child.is_alive():
                child.kill()
            app.close()

        results, failures = got["results"], got["failures"]
        last = max((r["t1"] for r in results), default=0.0)
        opened: dict[str, store.Generation] = {}
        inconsistent = []
        for r in results:
            name = r["answer"]["generation"]
            if name not in opened:
                opened[name] = store.Generation(
                    settings.index / name, store.verify(settings.index / name, None)
                )
            gen = opened[name]
            rows = {d.id: d.row for d in gen.documents}
            for q in r["answer"]["quotes"]:
                if (
                    q["doc"] not in rows
                    or gen.document(rows[q["doc"]]).text[q["start"] : q["end"]] != q["text"]
                ):
                    inconsistent.append((name, q["doc"]))
        answered = sorted({r["answer"]["generation"] for r in results})
        with_doc = [n for n in answered if TOGGLED in {d.id for d in opened[n].documents}]
        for gen in opened.values():
            gen.close()
        lat = [r["t1"] - r["t0"] for r in results]
        during = sum(1 for r in results if any(r["t0"] < e and s < r["t1"] for s, e in windows))
        stats = common.percentiles(lat)
        summary = {
            "clients": args.clients,
            "questions_per_client": args.questions,
            "requests": args.clients * args.questions,
            "answered": len(results),
            "failures": len(failures),
            "failure_messages": failures[:20],
            "inconsistent_answers": len(inconsistent),
            "latency_ms": stats,
            "throughput_rps": round(len(results) / elapsed, 2) if elapsed else None,
            "wall_s": round(elapsed, 2),
            "rebuilds": len(windows),
            "rebuilds_during_load": sum(1 for _, e in windows if e < last),
            "rebuild_s": {k: round(v / 1000, 2) for k, v in common.percentiles(rebuild_s).items()},
            "build_errors": build_errors,
            "generations_answered": answered,
            "generations_with_toggled_doc": with_doc,
            "answers_overlapping_a_rebuild": during,
            "first_build_s": round(first_build_s, 2),
            "first_build_chunks": first.chunks,
            "corpus_documents": args.reports + 1,
            "queue": {"default_concurrency": DEFAULT_CONCURRENCY, "max_size": QUEUE_SIZE},
            "model_threads": settings.threads,
        }

    headers = [
        "clients",
        "questions/client",
        "requests",
        "failed",
        "inconsistent",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "swaps (during load)",
        "generations answered",
        "load avg before",
    ]
    row = [
        args.clients,
        args.questions,
        summary["requests"],
        summary["failures"] + summary["requests"] - summary["answered"],
        summary["inconsistent_answers"],
        stats.get("p50"),
        stats.get("p95"),
        stats.get("p99"),
        stats.get("max"),
        summary["throughput_rps"],
        f"{summary['rebuilds']} ({summary['rebuilds_during_load']})",
        len(answered),
        " ".join(f"{x:.2f}" for x in load_before),
    ]
    table = "\n".join(
        [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---" for _ in headers) + "|",
            "| " + " | ".join(str(v) for v in row) + " |",
        ]
    )
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "benchmark": "load",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": common.machine(),
        "load_average_before": load_before,
        "load_average_after": common.loadavg(),
        "versions": common.versions(),
        "method": __doc__,
        "table": table,
        **summary,
    }
    args.out.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    if failures or inconsistent or build_errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
