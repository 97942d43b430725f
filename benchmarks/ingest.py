"""Ingest throughput of qa vs LlamaIndex's VectorStoreIndex, same model, same chunk size.

Method: the SQuAD dev paragraphs (one .txt file each) and the first N SciFact abstracts
(title + abstract, one .txt file each) are written to disk once. Then each system runs in its
own fresh Python process (so model loading and memory are comparable) with the same thread
cap (OMP_NUM_THREADS and torch.set_num_threads) and goes from the files on disk to a
persisted index it can query:

- qa: ``qa.build_index(full=True)`` with ``Settings(chunk_tokens=200, threads=T)``: parse,
  sentence chunking in model tokens (1 sentence overlap), embedding (chunk + sentence-unit
  vectors), BM25, FAISS, checksummed write. System "qa" uses the default
  ``build_precision="auto"`` (bfloat16 matmuls on a CPU with native bfloat16, as here);
  "qa-float32" forces float32, the precision LlamaIndex runs in.
- LlamaIndex: ``SimpleDirectoryReader`` -> ``SentenceSplitter(chunk_size=200,
  chunk_overlap=20)`` counting MiniLM tokens -> ``VectorStoreIndex`` with
  ``HuggingFaceEmbedding`` on the same local model folder (batch 32, like qa) ->
  ``storage_context.persist()``. LlamaIndex defaults otherwise (it embeds the file_path
  metadata line with each chunk).

Both load the model before the clock starts ("build" columns) and the table also gives the
time including imports and model loading ("with model load"). Each index answers one query
after the timed part, to prove it is usable. Mean tokens per embedded chunk are counted after
the run, so chunks/s can be compared with the work behind each chunk.

Run: python benchmarks/ingest.py [--quick] [--scifact-docs 1000 | --all-scifact] [--threads 1,2]
LlamaIndex lives in a separate venv (--llama-python, default ../bench-venv/bin/python, beside the repo).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

QUERY = "What did the authors find?"
MARK = "RESULT-JSON: "


def write_corpora(work: Path, squad_docs: int | None, scifact_docs: int | None) -> dict[str, Path]:
    """Write the SQuAD paragraphs and a SciFact subset as .txt files; return name -> folder."""
    from qa.evaluation import load_beir, load_squad

    out = {}
    docs, _ = load_squad(common.SQUAD)
    sets = {"squad": dict(list(docs.items())[:squad_docs])}
    sci, _, _ = load_beir(common.SCIFACT)
    sets["scifact"] = dict(list(sci.items())[:scifact_docs])
    for name, items in sets.items():
        folder = work / name / "corpus"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for doc, text in items.items():
            (folder / (doc if doc.endswith(".txt") else f"{doc}.txt")).write_text(text, encoding="utf-8")
        out[name] = folder
    return out


# ---------------------------------------------------------------- workers (one per process)


def worker_qa(corpus: Path, index: Path, threads: int, precision: str = "auto") -> dict[str, Any]:
    t0 = time.perf_counter()
    import qa
    from qa.building import build_embedder

    settings = qa.Settings(chunk_tokens=200, threads=threads, batch_size=32, build_precision=precision)
    t_import = time.perf_counter()
    embedder = build_embedder(settings, threads=settings.threads)
    embedder._load()  # private: loads the model now so the build clock excludes it
    embedder.token_starts("warm up the tokenizer")
    t_model = time.perf_counter()
    report = qa.build_index(corpus, index, full=True, settings=settings, embedder=embedder)
    t_build = time.perf_counter()
    idx = qa.Index.load(index, settings, embedder=embedder)
    t_q = time.perf_counter()
    answer = idx.ask(QUERY)
    query_s = time.perf_counter() - t_q
    gen = idx.generation
    tokens = [
        len(embedder.token_starts(gen.text(int(d))[int(a) : int(b)])) for d, a, b in gen.chunks.tolist()
    ]
    return {
        "documents": len(report.added) + len(report.changed) + len(report.unchanged),
        "chunks": report.chunks,
        "chunks_embedded": report.chunks_embedded,
        "import_s": t_import - t0,
        "model_load_s": t_model - t_import,
        "build_s": t_build - t_model,
        "stages_s": report.seconds,
        "mean_tokens_per_chunk": sum(tokens) / max(1, len(tokens)),
        "first_query_s": query_s,
        "query_ok": bool(answer.quotes),
        "index_bytes": sum(p.stat().st_size for p in index.rglob("*") if p.is_file()),
        "rss_mib": common.rss_mib(),
        "precision": embedder.precision,
    }


def worker_qa_float32(corpus: Path, index: Path, threads: int) -> dict[str, Any]:
    return worker_qa(corpus, index, threads, precision="float32")


def worker_llamaindex(corpus: Path, index: Path, threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    import torch
    from llama_index.core import (
        SimpleDirectoryReader,
        StorageContext,
        VectorStoreIndex,
        load_index_from_storage,
    )
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    torch.set_num_threads(threads)
    t_import = time.perf_counter()
    embed = HuggingFaceEmbedding(
        model_name=str(common.model_path()), device="cpu", embed_batch_size=32, show_progress_bar=False
    )
    tokenizer = embed._model.tokenizer
    embed.get_text_embedding("warm up")
    t_model = time.perf_counter()

    docs = SimpleDirectoryReader(str(corpus)).load_data(show_progress=False)
    t_read = time.perf_counter()
    splitter = SentenceSplitter(
        chunk_size=200,
        chunk_overlap=20,
        tokenizer=lambda text: tokenizer.encode(text, add_special_tokens=False),
    )
    nodes = splitter.get_nodes_from_documents(docs)
    t_split = time.perf_counter()
    vindex = VectorStoreIndex(nodes, embed_model=embed, show_progress=False)
    t_embed = time.perf_counter()
    vindex.storage_context.persist(persist_dir=str(index))
    t_build = time.perf_counter()

    t_q = time.perf_counter()
    loaded = load_index_from_storage(StorageContext.from_defaults(persist_dir=str(index)), embed_model=embed)
    hits = loaded.as_retriever(similarity_top_k=5).retrieve(QUERY)
    query_s = time.perf_counter() - t_q
    tokens = [
        len(tokenizer.encode(n.get_content(metadata_mode=MetadataMode.EMBED), add_special_tokens=False))
        for n in nodes
    ]
    return {
        "documents": len(docs),
        "chunks": len(nodes),
        "chunks_embedded": len(nodes),
        "import_s": t_import - t0,
        "model_load_s": t_model - t_import,
        "build_s": t_build - t_model,
        "stages_s": {
            "read": t_read - t_model,
            "split": t_split - t_read,
            "embed": t_embed - t_split,
            "persist": t_build - t_embed,
        },
        "mean_tokens_per_chunk": sum(tokens) / max(1, len(tokens)),
        "truncated_chunks": sum(t > 254 for t in tokens),
        "first_query_s": query_s,
        "query_ok": bool(hits),
        "index_bytes": sum(p.stat().st_size for p in index.rglob("*") if p.is_file()),
        "rss_mib": common.rss_mib(),
    }


WORKERS = {"qa": worker_qa, "qa-float32": worker_qa_float32, "llamaindex": worker_llamaindex}


def run_worker(python: str, system: str, corpus: Path, index: Path, threads: int) -> dict[str, Any]:
    """Run one system in a fresh process; return its measurements (wall time from the parent)."""
    shutil.rmtree(index, ignore_errors=True)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [python, __file__, "--worker", system, "--corpus", str(corpus), "--index", str(index)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--threads", str(threads)], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{system} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len(MARK) :])
    result["process_wall_s"] = wall
    result["python"] = python
    result["total_with_model_s"] = result["import_s"] + result["model_load_s"] + result["build_s"]
    result["chunks_per_s"] = result["chunks"] / result["build_s"]
    result["documents_per_s"] = result["documents"] / result["build_s"]
    result["chunks_per_s_with_model"] = result["chunks"] / result["total_with_model_s"]
    result["documents_per_s_with_model"] = result["documents"] / result["total_with_model_s"]
    result["tokens_per_s"] = result["chunks"] * result["mean_tokens_per_chunk"] / result["build_s"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="40 documents of each set, 1 thread")
    ap.add_argument("--squad-docs", type=int, default=None, help="SQuAD paragraphs (default all 1,048)")
    ap.add_argument("--scifact-docs", type=int, default=1000, help="first N SciFact abstracts")
    ap.add_argument("--all-scifact", action="store_true", help="all 5,183 SciFact abstracts")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
    ap.add_argument("--systems", default="qa,qa-float32,llamaindex")
    ap.add_argument(
        "--llama-python",
        default=os.environ.get("QA_BENCH_LLAMA_PYTHON", str(common.ROOT.parent / "bench-venv/bin/python")),
    )
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--wait-load", type=float, default=0.0, help="wait until the load average is below this")
    ap.add_argument("--max-wait", type=float, default=600.0, help="longest wait for --wait-load, seconds")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        result = WORKERS[args.worker](args.corpus, args.index, int(args.threads))
        print(MARK + json.dumps(result), flush=True)
        return

    squad_n = 40 if args.quick else args.squad_docs
    sci_n = 40 if args.quick else (None if args.all_scifact else args.scifact_docs)
    threads = [1] if args.quick else [int(t) for t in args.threads.split(",")]
    systems = args.systems.split(",")
    pythons = {"qa": sys.executable, "qa-float32": sys.executable, "llamaindex": args.llama_python}
    if args.wait_load:
        common.wait_for_quiet(args.wait_load, args.max_wait)
    load_before = common.loadavg()
    work = args.work or Path(tempfile.mkdtemp(prefix="qa-bench-ingest-"))
    corpora = write_corpora(work, squad_n, sci_n)
    runs = []
    for dataset, corpus in corpora.items():
        for t in threads:
            for system in systems:
                load = common.loadavg()
                print(f"{dataset} threads={t} {system} (load {load}) ...", file=sys.stderr, flush=True)
                res = run_worker(pythons[system], system, corpus, work / dataset / f"index-{system}-{t}", t)
                res.update(dataset=dataset, threads=t, system=system, load_at_start=load)
                res["load_at_end"] = common.loadavg()
                runs.append(res)
                print(
                    f"  {res['chunks']} chunks in {res['build_s']:.1f}s = {res['chunks_per_s']:.1f} chunks/s",
                    file=sys.stderr,
                    flush=True,
                )
    ratios = []
    for dataset in corpora:
        for t in threads:
            by = {r["system"]: r for r in runs if r["dataset"] == dataset and r["threads"] == t}
            for system in ("qa", "qa-float32"):
                if system not in by or "llamaindex" not in by:
                    continue
                q, li = by[system], by["llamaindex"]
                ratios.append(
                    {
                        "dataset": dataset,
                        "threads": t,
                        "system": system,
                        "precision": q["precision"],
                        "chunks_per_s_ratio": q["chunks_per_s"] / li["chunks_per_s"],
                        "documents_per_s_ratio": q["documents_per_s"] / li["documents_per_s"],
                        "tokens_per_s_ratio": q["tokens_per_s"] / li["tokens_per_s"],
                        "with_model_documents_per_s_ratio": q["documents_per_s_with_model"]
                        / li["documents_per_s_with_model"],
                        "target_2x_chunks_per_s_met": q["chunks_per_s"] >= 2 * li["chunks_per_s"],
                    }
                )
    headers = [
        "set", "thr", "system", "docs", "chunks", "tok/chunk", "build s", "chunks/s", "docs/s",
        "tokens/s", "with model s", "chunks/s (w/ model)", "peak RSS MiB", "load",
    ]  # fmt: skip
    rows = [
        [
            r["dataset"], r["threads"], r["system"], r["documents"], r["chunks"],
            round(r["mean_tokens_per_chunk"], 1), round(r["build_s"], 1), round(r["chunks_per_s"], 2),
            round(r["documents_per_s"], 2), round(r["tokens_per_s"]), round(r["total_with_model_s"], 1),
            round(r["chunks_per_s_with_model"], 2), r["rss_mib"].get("VmHWM"),
            f"{r['load_at_start'][0]}→{r['load_at_end'][0]}",
        ]
        for r in runs
    ]  # fmt: skip
    text = common.table(headers, rows)
    if ratios:
        text += "\n\n" + common.table(
            ["set", "thr", "qa run", "qa/LI chunks/s", "qa/LI docs/s", "qa/LI tokens/s", "≥2× chunks/s?"],
            [
                [
                    r["dataset"], r["threads"], f"{r['system']} ({r['precision']})",
                    round(r["chunks_per_s_ratio"], 2),
                    round(r["documents_per_s_ratio"], 2), round(r["tokens_per_s_ratio"], 2),
                    "met" if r["target_2x_chunks_per_s_met"] else "NOT met",
                ]
                for r in ratios
            ],
        )  # fmt: skip
    print(text)
    path = common.save(
        "ingest",
        args.quick,
        {
            "method": __doc__,
            "target": "qa chunks/s >= 2x LlamaIndex chunks/s (same model, chunk size, threads)",
            "datasets": {k: {"path": str(common.SQUAD if k == "squad" else common.SCIFACT),
                             "documents": len(list(v.glob('*.txt')))} for k, v in corpora.items()},
            "runs": runs,
            "ratios": ratios,
            "table": text,
        },
        load_before,
    )  # fmt: skip
    print(f"\nresults: {path}", file=sys.stderr)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
