"""Peak memory of a build against input size (issue 14, item 4).

Method: for each kind of text and size, one file is written into an empty corpus and
``qa.build_index`` runs in a fresh child process with the real model (as ``qa index`` does:
build embedder, ``QA_BUILD_THREADS`` threads, default settings but ``max_file_mb`` large
enough for the file). The child reports its own peak resident memory (``VmHWM`` from
/proc, the build process: model, parsing of plain text, tokenizing, chunking, embedding,
BM25, writing) and the peak of its children (``RUSAGE_CHILDREN``: the parser worker, which
has its own 3 GiB cap and runs only for Markdown/HTML/PDF/DOCX). The parent samples the
child's RSS every 0.2 s and kills it above ``--kill-above`` GiB, so a build that would take
the machine down is recorded as "over the limit" instead.

Kinds (repetitive on purpose: identical chunks are embedded once, so the run measures
parsing and chunking memory, not hours of embedding):
- ``a``: "a " repeated: one token per two characters, no sentence ends (the worst case for
  tokens per byte);
- ``cjk``: Chinese sentences of 10-40 random common ideographs ending in "。" (64 KiB of them,
  repeated): one token per character, three bytes per character, no spaces;
- ``md-line``: a Markdown file of one line: English prose with every newline replaced by a
  space (parsed in the worker process, chunked in the build process);
- ``prose``: the default corpus's article repeated: ordinary paragraphs.

``--qa-path DIR`` imports qa from another checkout (e.g. ``git archive`` of an older commit)
to compare before and after.

Run: python benchmarks/memory.py [--quick] [--sizes 1,4,16,64] [--kinds a,cjk,md-line,prose]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

MARK = "RESULT-JSON: "
KINDS = ("a", "cjk", "md-line", "prose")


def make_text(kind: str, size: int) -> tuple[str, bytes]:
    """(file name, bytes) of about ``size`` bytes (UTF-8) of the given kind."""
    if kind == "a":
        return "a.txt", b"a " * (size // 2)
    if kind == "cjk":  # 64 KiB of random sentences, repeated
        rng = random.Random(0)
        chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
        parts, n = [], 0
        while n < 2**16:
            sentence = "".join(rng.choice(chars) for _ in range(rng.randint(10, 40))) + "。"
            parts.append(sentence)
            n += len(sentence.encode())
            if len(parts) % 20 == 0:
                parts.append("\n\n")
        block = "".join(parts) + "\n\n"
        text = block * (size // len(block.encode()) + 1)
        return "cjk.txt", text.encode()[:size].decode("utf-8", "ignore").encode()
    article = (common.ROOT / "corpus" / "openai-foxconn-ai-hardware.txt").read_text(encoding="utf-8")
    if kind == "md-line":
        line = " ".join(article.split()) + " "
        return "line.md", (line * (size // len(line.encode()) + 1)).encode()[:size]
    if kind == "prose":
        block = article.strip() + "\n\n"
        return "prose.txt", (block * (size // len(block.encode()) + 1)).encode()[:size]
    raise ValueError(f"unknown kind {kind!r}")


def child(corpus: str, index: str, threads: int) -> None:
    """Build the index of ``corpus`` and print peak memory (run in a fresh process)."""
    t0 = time.perf_counter()
    import qa
    from qa.building import build_index

    settings = qa.Settings(corpus=Path(corpus), index=Path(index), max_file_mb=1024, build_threads=threads)
    report = build_index(settings)
    result = {
        "peak_rss_mib": common.rss_mib()["VmHWM"],
        "worker_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "stages_s": {k: round(v, 1) for k, v in report.seconds.items()},
        "added": report.added,
        "failed": [f"{s.id}: {s.reason}" for s in report.failed],
        "chunks": report.chunks,
        "chunks_embedded": report.chunks_embedded,
        "qa_file": qa.__file__,
    }
    print(MARK + json.dumps(result), flush=True)


def measure(kind: str, mib: float, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    name, data = make_text(kind, int(mib * 2**20))
    corpus, index = tmp / "corpus", tmp / "index"
    shutil.rmtree(corpus, ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    corpus.mkdir()
    (corpus / name).write_bytes(data)
    del data
    env = dict(os.environ)
    if args.qa_path:
        env["PYTHONPATH"] = args.qa_path + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", str(corpus), str(index), "--threads", str(args.threads)]
    load = common.loadavg()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampled = {"max": 0.0, "killed": False}

    def watch() -> None:  # the machine is shared: never let one build take it down
        while proc.poll() is None:
            rss = common.rss_mib(proc.pid).get("VmRSS", 0.0)
            sampled["max"] = max(sampled["max"], rss)
            if rss > args.kill_above * 1024:
                sampled["killed"] = True
                proc.kill()
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    row: dict[str, Any] = {
        "kind": kind,
        "file": name,
        "mib": mib,
        "load_average": load,
        "sampled_max_rss_mib": sampled["max"],
    }
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if sampled["killed"]:
        row["error"] = f"killed: RSS over {args.kill_above} GiB"
    elif proc.returncode != 0 or not lines:
        row["error"] = f"exit {proc.returncode}: {err.strip().splitlines()[-1:] if err.strip() else ''}"
    else:
        row.update(json.loads(lines[-1][len(MARK) :]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 and 4 MiB of two kinds (CI-sized)")
    parser.add_argument("--sizes", default="1,4,16,64", help="file sizes in MiB")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--threads", type=int, default=2, help="build threads (QA_BUILD_THREADS)")
    parser.add_argument("--kill-above", type=float, default=8.0, help="GiB of RSS at which a build is killed")
    parser.add_argument("--qa-path", default="", help="import qa from this folder instead")
    parser.add_argument("--name", default="memory", help="results file name")
    parser.add_argument("--wait-load", type=float, default=None)
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        common.set_threads_env(args.threads)
        child(*args.child, args.threads)
        return
    sizes = [1.0, 4.0] if args.quick else [float(s) for s in args.sizes.split(",")]
    kinds = ["a", "md-line"] if args.quick else args.kinds.split(",")
    load_before = common.wait_for_quiet(args.wait_load, args.max_wait) if args.wait_load else common.loadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qa-memory-") as tmp:
        for kind in kinds:
            for mib in sizes:
                row = measure(kind, mib, args, Path(tmp))
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("added",)}), flush=True)
    print(
        common.table(
            ["kind", "MiB", "peak RSS MiB", "worker MiB", "s", "chunks", "embedded", "load"],
            [
                [
                    r["kind"],
                    r["mib"],
                    r.get("peak_rss_mib", r.get("error")),
                    r.get("worker_peak_rss_mib", ""),
                    r.get("seconds", ""),
                    r.get("chunks", ""),
                    r.get("chunks_embedded", ""),
                    r["load_average"][0],
                ]
                for r in rows
            ],
        )
    )
    method = (__doc__ or "").split("Run:")[0].strip()
    path = common.save(
        args.name, args.quick, {"method": method, "qa_path": args.qa_path, "rows": rows}, load_before
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
