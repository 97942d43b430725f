"""Cold start: time from process start to the first answer over the default corpus's index.

Method: the repository's ``corpus/`` is indexed once into a temp folder (``qa index``). Then,
``--repeat`` times each (OS page cache warm, as on a desktop that ran qa before):

- CLI: ``qa ask --index DIR "question"`` is spawned (unbuffered output) and timed from
  ``Popen`` to its first printed line (the answer: what a user waits for) and to its exit
  (interpreter shutdown included, when the shell prompt comes back).
- Instrumented: ``python -c`` of a script that stamps ``time.time()`` after each stage; the
  parent stamps just before spawning. Stages: interpreter start-up, ``import qa``, model
  fingerprint (SHA-256 of the model folder, done by ``Index.load``), the rest of
  ``Index.load`` (checksums, FAISS, BM25, SQLite), model imports (torch, transformers,
  sentence-transformers), model weights (``embedder._load()``), first ``ask`` (its
  embed/search/answer parts), a second ``ask`` (warm) and interpreter exit.

One extra instrumented run under ``python -X importtime`` lists the slowest imports.
Target: first answer printed within 5 s of process start (median of the CLI runs).

Run: python benchmarks/coldstart.py [--quick] [--repeat 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

QUESTION = "Who is OpenAI partnering with?"
MARK = "RESULT-JSON: "

CHILD = """
import time
t_start = time.time()
import json, sys
import qa
t_import = time.time()
from qa.embedding import model_fingerprint, default_model_path
model_fingerprint(default_model_path())
t_fp = time.time()
idx = qa.Index.load(sys.argv[1], qa.Settings(threads=int(sys.argv[3])))
t_load = time.time()
import torch, transformers, sentence_transformers
t_mlimport = time.time()
idx.embedder._load()
t_model = time.time()
a = idx.ask(sys.argv[2])
t_first = time.time()
b = idx.ask(sys.argv[2] + " today")
t_second = time.time()
print("RESULT-JSON: " + json.dumps({
    "t_start": t_start, "t_import": t_import, "t_fp": t_fp, "t_load": t_load, "t_mlimport": t_mlimport,
    "t_model": t_model, "t_first": t_first, "t_second": t_second,
    "first_timings": a.timings, "quotes": len(a.quotes), "found": a.found,
}), flush=True)
"""


def env_for(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def qa_command() -> list[str]:
    script = Path(sys.executable).parent / "qa"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from qa.cli import main; main()"]


def run_cli(index: Path, threads: int) -> tuple[float, float]:
    """(seconds until the answer's first line is printed, seconds until the process exits)."""
    env = env_for(threads)
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches the pipe when printed, as on a terminal
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*qa_command(), "ask", "--index", str(index), "--k", "3", QUESTION],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first_line = proc.stdout.readline()
    t_line = time.perf_counter() - t0
    rest = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
    err = proc.stderr.read()
    proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or "[1]" not in first_line + rest:
        raise RuntimeError(f"qa ask failed ({proc.returncode}): {err[-2000:]}")
    return t_line, wall


def run_instrumented(index: Path, threads: int, importtime: bool = False) -> tuple[dict[str, Any], str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD]
    t_spawn = time.time()
    proc = subprocess.run(
        [*cmd, str(index), QUESTION, str(threads)],
        env=env_for(threads),
        capture_output=True,
        text=True,
        check=False,
    )
    t_exit = time.time()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"instrumented run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    s = json.loads(lines[-1][len(MARK) :])
    stages = {
        "interpreter_start": s["t_start"] - t_spawn,
        "import_qa": s["t_import"] - s["t_start"],
        "model_fingerprint": s["t_fp"] - s["t_import"],
        "index_load": s["t_load"] - s["t_fp"],
        "model_imports": s["t_mlimport"] - s["t_load"],
        "model_weights": s["t_model"] - s["t_mlimport"],
        "first_ask": s["t_first"] - s["t_model"],
        "first_answer_since_spawn": s["t_first"] - t_spawn,
        "second_ask": s["t_second"] - s["t_first"],
        "exit": t_exit - s["t_second"],
    }
    stages.update({f"first_ask_{k}": v for k, v in s["first_timings"].items()})
    return stages, proc.stderr


def slowest_imports(stderr: str, n: int = 15) -> list[dict[str, Any]]:
    """Top-level imports (not nested in another) by cumulative time, from ``-X importtime``."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, name = line[len("import time:") :].split("|", 2)
        if len(name) - len(name.lstrip()) == 1:  # one space: imported by the script itself
            rows.append(
                {"module": name.strip(), "cumulative_s": int(cum_us) / 1e6, "self_s": int(self_us) / 1e6}
            )
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 runs of each kind")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--corpus", type=Path, default=common.ROOT / "corpus")
    ap.add_argument("--wait-load", type=float, default=0.0, help="wait until the load average is below this")
    ap.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --wait-load, seconds")
    args = ap.parse_args()
    repeat = 2 if args.quick else args.repeat

    work = Path(tempfile.mkdtemp(prefix="qa-bench-cold-"))
    index = work / "index"
    build = subprocess.run(
        [*qa_command(), "index", "--corpus", str(args.corpus), "--index", str(index), "--json"],
        env=env_for(args.threads),
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        raise SystemExit(f"qa index failed: {build.stderr[-2000:]}")
    report = json.loads(build.stdout[build.stdout.index("{") :])
    if args.wait_load:
        common.wait_for_quiet(args.wait_load, args.max_wait)
    load_before = common.loadavg()
    run_cli(index, args.threads)  # one untimed run: page cache warm, .pyc files written
    cli, cli_exit = [], []
    staged = []
    for i in range(repeat):
        shown, ended = run_cli(index, args.threads)
        cli.append(shown)
        cli_exit.append(ended)
        staged.append(run_instrumented(index, args.threads)[0])
        print(f"run {i + 1}: qa ask {shown:.2f}s (load {common.loadavg()})", file=sys.stderr, flush=True)
    _, importtime_err = run_instrumented(index, args.threads, importtime=True)

    med = {k: statistics.median(s[k] for s in staged) for k in staged[0]}
    rows = [
        ["`qa ask` (CLI): spawn → answer printed", round(statistics.median(cli), 2), round(min(cli), 2),
         round(max(cli), 2)],
        ["`qa ask` (CLI): spawn → process exit", round(statistics.median(cli_exit), 2),
         round(min(cli_exit), 2), round(max(cli_exit), 2)],
    ]  # fmt: skip
    rows += [
        [k.replace("_", " "), round(med[k], 3), round(min(s[k] for s in staged), 3),
         round(max(s[k] for s in staged), 3)]
        for k in staged[0]
    ]  # fmt: skip
    text = common.table(["stage", "median s", "min s", "max s"], rows)
    cli_median = statistics.median(cli)
    text += f"\n\nanswer printed by `qa ask` (median of {repeat}): {cli_median:.2f}s; target ≤ 5 s: " + (
        "met" if cli_median <= 5 else "NOT met"
    )
    imports = slowest_imports(importtime_err)
    text += "\n\nslowest top-level imports (one run, -X importtime):\n\n" + common.table(
        ["module", "cumulative s"], [[r["module"], round(r["cumulative_s"], 3)] for r in imports[:10]]
    )
    print(text)
    path = common.save(
        "coldstart",
        args.quick,
        {
            "method": __doc__,
            "target": "first answer <= 5 s after process start",
            "corpus": str(args.corpus),
            "index_chunks": report.get("chunks"),
            "threads": args.threads,
            "cli_answer_printed_s": cli,
            "cli_exit_s": cli_exit,
            "stages_s": staged,
            "stages_median_s": med,
            "cli_median_s": cli_median,
            "target_met": cli_median <= 5,
            "slowest_imports": imports,
            "table": text,
        },
        load_before,
    )
    print(f"\nresults: {path}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
