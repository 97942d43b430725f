"""Cold start: time from process start to the first answer over the default corpus's index.

Method: the repository's ``corpus/`` is indexed once into a temp folder (``qa index``). One
untimed ``qa ask`` warms the OS page cache and writes .pyc files (a desktop that ran qa
before). Then, ``--repeat`` rounds (default 5), each spawning in turn:

- ``qa ask --index DIR "question"`` (questions embedded by the numpy encoder, the default),
  timed from ``Popen`` to its first printed line (the answer: what a user waits for) and to
  its exit (the shell prompt), with its peak RSS (``wait4`` rusage ``ru_maxrss``);
- the yardstick ``python -c "import torch"`` (spawn to exit, peak RSS): what any torch-based
  question path pays before it starts;
- the same ``qa ask`` with ``QA_QUERY_ENCODER=sentence-transformers`` (the path before issue
  15: torch, transformers, sentence-transformers);
- an instrumented ``python -c`` script that stamps ``time.time()`` after each stage
  (interpreter start-up, ``import qa``, model fingerprint (from its cache,
  ``qa/fingerprints.py``), the rest of ``Index.load``, query encoder load, first ``ask`` with
  its embed/search/answer parts, a second ``ask``, exit) and, after the answers, what the
  fingerprint costs without the cache (SHA-256 of the model folder, page cache warm).

Interleaving the kinds spreads the machine's load over all of them alike. Medians are
reported with min and max. One extra instrumented run under ``python -X importtime`` lists
the slowest imports. Then ``--serve-repeat`` rounds (default 3) of ``qa serve`` over the built
index on a free loopback port, with the numpy encoder and with sentence-transformers in turn,
timed from ``Popen`` until its page answers (polled every 0.05 s) and until the first
``gradio_client`` request to ``/ask`` (sent as soon as the page is up) returns the answer; its
VmHWM then.

Targets (issue 15): ``qa ask`` answer ≤ 1.5 s median and ≤ 0.5 × ``import torch`` in the same
run; peak RSS ≤ 250 MB; ``qa serve`` answers its first request ≤ 6 s after start.

Run: python benchmarks/coldstart.py [--quick] [--repeat 5] [--serve-repeat 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
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
TARGET_S, TARGET_RATIO, TARGET_RSS_MB, TARGET_SERVE_S = 1.5, 0.5, 250, 6.0

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
emb = idx.embedder
emb.load() if hasattr(emb, "load") else emb._load()  # numpy: tokenizer; torch: imports + weights
t_model = time.time()
a = idx.ask(sys.argv[2])
t_first = time.time()
b = idx.ask(sys.argv[2] + " today")
t_second = time.time()
from pathlib import Path
from qa.embedding import _sha256_files
root = default_model_path()
files = [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*")) if p.is_file()]
t_hash0 = time.time()
_sha256_files([(r, p) for r, p in files if not (r.startswith(".") or r.endswith(".md"))])
t_hash = time.time() - t_hash0
print("RESULT-JSON: " + json.dumps({
    "t_start": t_start, "t_import": t_import, "t_fp": t_fp, "t_load": t_load,
    "t_model": t_model, "t_first": t_first, "t_second": t_second, "encoder": type(emb).__name__,
    "t_hash": t_hash,
    "first_timings": a.timings, "quotes": len(a.quotes), "found": a.found,
}), flush=True)
"""


def env_for(threads: int, encoder: str = "auto") -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(QA_QUERY_ENCODER=encoder, GRADIO_ANALYTICS_ENABLED="False")
    return env


def qa_command() -> list[str]:
    script = Path(sys.executable).parent / "qa"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from qa.cli import main; main()"]


def _reap(proc: subprocess.Popen[str]) -> float:
    """Wait for ``proc`` and return its peak RSS in MiB (``ru_maxrss`` is KiB on Linux)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def run_cli(index: Path, threads: int, encoder: str = "auto") -> tuple[float, float, float]:
    """(s until the answer's first line is printed, s until the process exits, peak RSS MiB)."""
    env = env_for(threads, encoder)
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
    rss = _reap(proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or "[1]" not in first_line + rest:
        raise RuntimeError(f"qa ask failed ({proc.returncode}): {err[-2000:]}")
    return t_line, wall, rss


def run_import_torch(threads: int) -> tuple[float, float]:
    """The yardstick: (s from spawn to exit of ``python -c "import torch"``, peak RSS MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import torch"], env=env_for(threads), stdout=subprocess.DEVNULL, text=True
    )
    rss = _reap(proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("python -c 'import torch' failed")
    return wall, rss


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
        "query_encoder_load": s["t_model"] - s["t_load"],
        "first_ask": s["t_first"] - s["t_model"],
        "first_answer_since_spawn": s["t_first"] - t_spawn,
        "second_ask": s["t_second"] - s["t_first"],
        "exit": t_exit - s["t_second"] - s["t_hash"],
        "model_fingerprint_uncached": s["t_hash"],
    }
    stages.update({f"first_ask_{k}": v for k, v in s["first_timings"].items()})
    return stages, proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_serve(
    index: Path, corpus: Path, threads: int, encoder: str = "auto", timeout: float = 300
) -> dict[str, float]:
    """``qa serve`` from spawn: s until its page answers (``up``) and until its first /ask
    request is answered (``answer``, gradio_client connecting as soon as the page is up), and
    its VmHWM (MiB) then."""
    import httpx
    from gradio_client import Client

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    work = Path(tempfile.mkdtemp(prefix="qa-bench-serve-"))
    shutil.copytree(corpus, work / "corpus")
    log = open(work / "serve.log", "w")  # noqa: SIM115 (closed below)
    cmd = [*qa_command(), "serve", "--index", str(index), "--corpus", str(work / "corpus")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        env=env_for(threads, encoder),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    try:
        while True:  # a cheap poll: connection refused until uvicorn listens
            if proc.poll() is not None:
                raise RuntimeError("qa serve exited: " + (work / "serve.log").read_text()[-2000:])
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError("qa serve did not start in time")
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        up = time.perf_counter() - t0
        result = Client(url, verbose=False).predict(QUESTION, 3, api_name="/ask")
        answer = time.perf_counter() - t0
        if not result.get("found"):
            raise RuntimeError(f"qa serve answered wrongly: {result}")
        hwm = common.rss_mib(proc.pid).get("VmHWM", float("nan"))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return {"up": up, "answer": answer, "vmhwm_mib": hwm}


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


def _row(label: str, values: list[float], digits: int = 2) -> list[Any]:
    return [
        label,
        round(statistics.median(values), digits),
        round(min(values), digits),
        round(max(values), digits),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds, 1 serve start")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--serve-repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--corpus", type=Path, default=common.ROOT / "corpus")
    ap.add_argument("--wait-load", type=float, default=0.0, help="wait until the load average is below this")
    ap.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --wait-load, seconds")
    args = ap.parse_args()
    repeat = 2 if args.quick else args.repeat
    serve_repeat = 1 if args.quick else args.serve_repeat

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
    run_cli(index, args.threads, "sentence-transformers")
    runs: dict[str, list[float]] = {k: [] for k in ("ask", "ask_exit", "ask_rss", "torch", "torch_rss",
                                                    "st_ask", "st_ask_exit", "st_ask_rss")}  # fmt: skip
    staged = []
    loads = []
    for i in range(repeat):
        shown, ended, rss = run_cli(index, args.threads)
        wall, trss = run_import_torch(args.threads)
        shown_st, ended_st, rss_st = run_cli(index, args.threads, "sentence-transformers")
        for key, value in zip(runs, (shown, ended, rss, wall, trss, shown_st, ended_st, rss_st), strict=True):
            runs[key].append(value)
        staged.append(run_instrumented(index, args.threads)[0])
        loads.append(common.loadavg())
        print(
            f"round {i + 1}: qa ask {shown:.2f}s ({rss:.0f} MiB), import torch {wall:.2f}s, "
            f"qa ask via torch {shown_st:.2f}s (load {loads[-1]})",
            file=sys.stderr,
            flush=True,
        )
    _, importtime_err = run_instrumented(index, args.threads, importtime=True)
    serve: dict[str, list[dict[str, float]]] = {"auto": [], "sentence-transformers": []}
    for i in range(serve_repeat):
        for enc in serve:
            serve[enc].append(run_serve(index, args.corpus, args.threads, enc))
            took = serve[enc][-1]["answer"]
            print(
                f"serve {i + 1} ({enc}): first answer {took:.2f}s (load {common.loadavg()})", file=sys.stderr
            )

    med = {k: statistics.median(s[k] for s in staged) for k in staged[0]}
    rows = [
        _row("`qa ask` (numpy encoder): spawn → answer printed", runs["ask"]),
        _row("`qa ask` (numpy encoder): spawn → process exit", runs["ask_exit"]),
        _row("`qa ask` (numpy encoder): peak RSS MiB", runs["ask_rss"], 1),
        _row('yardstick `python -c "import torch"`: spawn → exit', runs["torch"]),
        _row('yardstick `python -c "import torch"`: peak RSS MiB', runs["torch_rss"], 1),
        _row("`qa ask` via sentence-transformers: spawn → answer printed", runs["st_ask"]),
        _row("`qa ask` via sentence-transformers: spawn → process exit", runs["st_ask_exit"]),
        _row("`qa ask` via sentence-transformers: peak RSS MiB", runs["st_ask_rss"], 1),
        _row("`qa serve` (numpy encoder): spawn → page up", [r["up"] for r in serve["auto"]]),
        _row("`qa serve` (numpy encoder): spawn → first /ask answered", [r["answer"] for r in serve["auto"]]),
        _row("`qa serve` (numpy encoder): VmHWM MiB then", [r["vmhwm_mib"] for r in serve["auto"]], 1),
        _row(
            "`qa serve` via sentence-transformers: spawn → first /ask answered",
            [r["answer"] for r in serve["sentence-transformers"]],
        ),
        _row(
            "`qa serve` via sentence-transformers: VmHWM MiB then",
            [r["vmhwm_mib"] for r in serve["sentence-transformers"]],
            1,
        ),
    ]
    rows += [_row("instrumented: " + k.replace("_", " "), [s[k] for s in staged], 3) for k in staged[0]]
    text = common.table(["measure", "median", "min", "max"], rows)
    ask_med, torch_med = statistics.median(runs["ask"]), statistics.median(runs["torch"])
    rss_mb = max(runs["ask_rss"]) * 2**20 / 1e6
    serve_med = statistics.median(r["answer"] for r in serve["auto"])
    met = {
        "ask_median_le_1_5_s": ask_med <= TARGET_S,
        "ask_le_half_import_torch": ask_med <= TARGET_RATIO * torch_med,
        "ask_peak_rss_le_250_MB": rss_mb <= TARGET_RSS_MB,
        "serve_first_answer_le_6_s": serve_med <= TARGET_SERVE_S,
    }
    verdict = {key: "met" if ok else "NOT met" for key, ok in met.items()}
    text += (
        f"\n\n`qa ask` median {ask_med:.2f} s (target ≤ {TARGET_S} s: {verdict['ask_median_le_1_5_s']}); "
        f"{ask_med / torch_med:.2f} × `import torch` ({torch_med:.2f} s; target ≤ {TARGET_RATIO}: "
        f"{verdict['ask_le_half_import_torch']}); peak RSS {rss_mb:.0f} MB (target ≤ {TARGET_RSS_MB} MB: "
        f"{verdict['ask_peak_rss_le_250_MB']}); `qa serve` first answer {serve_med:.2f} s (target ≤ "
        f"{TARGET_SERVE_S} s: {verdict['serve_first_answer_le_6_s']})"
    )
    imports = slowest_imports(importtime_err)
    text += "\n\nslowest top-level imports (one instrumented run, -X importtime):\n\n" + common.table(
        ["module", "cumulative s"], [[r["module"], round(r["cumulative_s"], 3)] for r in imports[:10]]
    )
    print(text)
    path = common.save(
        "coldstart",
        args.quick,
        {
            "method": __doc__,
            "targets": {
                "ask_median_s": TARGET_S,
                "ask_vs_import_torch": TARGET_RATIO,
                "ask_peak_rss_mb": TARGET_RSS_MB,
                "serve_first_answer_s": TARGET_SERVE_S,
            },
            "corpus": str(args.corpus),
            "index_chunks": report.get("chunks"),
            "threads": args.threads,
            "runs": runs,
            "load_average_per_round": loads,
            "serve": serve,
            "stages_s": staged,
            "stages_median_s": med,
            "met": met,
            "slowest_imports": imports,
            "table": text,
        },
        load_before,
    )
    print(f"\nresults: {path}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
