"""The command line: ``qa index``, ``qa ask``, ``qa info``, ``qa serve``, ``qa eval``.

The library raises QAError subclasses; this edge turns them into one-line messages on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from qa.errors import QAError

F = TypeVar("F", bound=Callable[..., Any])

_INDEX_OPT = click.option(
    "--index",
    "index",
    type=click.Path(path_type=Path),
    default=None,
    help="Index folder (default: $QA_INDEX or ./index).",
)
_CORPUS_OPT = click.option(
    "--corpus",
    "corpus",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of documents (default: $QA_CORPUS or ./corpus).",
)
_MODEL_OPT = click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Local sentence-transformers model folder (default: $QA_MODEL or bundled MiniLM).",
)


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from qa.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise click.UsageError(f"invalid setting {where}: {first['msg']}") from None


def _edge(func: F) -> F:
    """Turn library errors into 'error: ...' and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QAError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qa", message="qa %(version)s")
def main() -> None:
    """qa: answers from your documents as verbatim quotes you can check."""


def _bar_progress() -> Callable[[str, int, int], None]:
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total,
                desc=stage,
                unit=" chunks" if stage == "embedding" else " files" if stage == "parsing" else "",
                leave=False,
                file=sys.stderr,
                disable=None,
            )
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress


@main.command("index")
@_CORPUS_OPT
@_INDEX_OPT
@_MODEL_OPT
@click.option("--full", is_flag=True, help="Re-parse and re-embed everything.")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
@_edge
def index_cmd(corpus: Path | None, index: Path | None, model: Path | None, full: bool, as_json: bool) -> None:
    """Build or update the index: only new and changed documents are processed."""
    from dataclasses import asdict

    from qa.building import build_index

    settings = _settings(corpus=corpus, index=index, model=model)
    report = build_index(settings, full=full, progress=_bar_progress())
    if as_json:
        click.echo(json.dumps(asdict(report), indent=1))
    else:
        click.echo(report.summary())


@main.command("ask")
@_INDEX_OPT
@_MODEL_OPT
@click.option("--k", "k", type=click.IntRange(1, 100), default=None, help="Quotes to show (default 5).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("question", nargs=-1, required=True)
@_edge
def ask_cmd(
    index: Path | None, model: Path | None, k: int | None, as_json: bool, question: tuple[str, ...]
) -> None:
    """Answer QUESTION with quoted passages from the indexed documents."""
    from qa.index import Index

    settings = _settings(index=index, model=model)
    idx = Index.load(settings.index, settings)
    for w in idx.warnings:
        click.echo(f"warning: {w}", err=True)
    answer = idx.ask(" ".join(question), k)
    if as_json:
        click.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    if answer.found:
        click.echo(click.style("Answer: ", bold=True) + answer.answer)
    else:
        click.echo(click.style(answer.message, bold=True))
    for i, q in enumerate(answer.quotes, 1):
        where = f"{q.doc}" + (f", {q.location}" if q.location else "")
        click.echo(f"\n[{i}] {where}  [{q.start}:{q.end}]  score {q.score:.3f}")
        a, b = q.highlight[0] - q.start, q.highlight[1] - q.start
        click.echo("  > " + q.text[:a] + click.style(q.text[a:b], bold=True, underline=True) + q.text[b:])


@main.group("eval")
def eval_group() -> None:
    """Measure retrieval and answer quality on SQuAD- or BEIR-format data."""


_WORK_OPT = click.option(
    "--index-dir",
    "work",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the evaluation corpus and index (default .eval-cache/<name>); re-runs reuse it.",
)


def _emit(result: dict[str, Any], as_json: bool, out: Path | None) -> None:
    text = json.dumps(result, indent=1)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    if as_json:
        click.echo(text)
        return
    for key, value in result.items():
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            for sub, values in value.items():
                click.echo(f"{key + ' ' + sub:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
        elif isinstance(value, dict):
            click.echo(f"{key:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in value.items()))
        elif isinstance(value, float):
            click.echo(f"{key:28s} {value:.4f}")
        else:
            click.echo(f"{key:28s} {value}")


@eval_group.command("squad")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_WORK_OPT
@click.option("--limit", type=click.IntRange(1), default=None, help="Ask only the first N questions.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a PNG of recall@k for dense, BM25, fused and qa (needs matplotlib).",
)
@_edge
def eval_squad_cmd(
    file: Path, work: Path | None, limit: int | None, as_json: bool, out: Path | None, plot: Path | None
) -> None:
    """Index every paragraph of a SQuAD v1.1/v2.0 FILE and ask all its questions."""
    from qa import evaluation

    settings = _settings()
    docs, questions = evaluation.load_squad(file)
    index = evaluation.prepare_index(
        docs, work or Path(".eval-cache") / file.stem, settings, None, _bar_progress()
    )
    result = evaluation.eval_squad(questions[:limit], index, _bar_progress())
    _emit({"file": str(file), **result}, as_json, out)
    if plot is not None:
        evaluation.plot_recall(result, plot, f"{file.name}: {result['answerable']} questions")


@eval_group.command("beir")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_WORK_OPT
@click.option("--split", default="test", show_default=True, help="qrels/<split>.tsv to score.")
@click.option(
    "--rationales",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="SciFact sentences folder (claims_dev.jsonl, corpus_sentences.jsonl): also score highlights.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@_edge
def eval_beir_cmd(
    folder: Path, work: Path | None, split: str, rationales: Path | None, as_json: bool, out: Path | None
) -> None:
    """Index a BEIR FOLDER (corpus.jsonl, queries.jsonl, qrels/) and score its queries."""
    from qa import evaluation

    settings = _settings()
    docs, queries, qrels = evaluation.load_beir(folder, split)
    name = folder.name if folder.name != "beir" else folder.parent.name
    index = evaluation.prepare_index(
        docs, work or Path(".eval-cache") / name, settings, None, _bar_progress()
    )
    result = evaluation.eval_beir(queries, qrels, index, _bar_progress())
    if rationales is not None:
        result["rationales"] = evaluation.eval_rationales(
            rationales / "claims_dev.jsonl", rationales / "corpus_sentences.jsonl", index, _bar_progress()
        )
    _emit({"folder": str(folder), "split": split, **result}, as_json, out)


@main.command("info")
@_INDEX_OPT
@_MODEL_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@_edge
def info_cmd(index: Path | None, model: Path | None, as_json: bool) -> None:
    """Describe the live index: generation, model, counts, documents, skipped files."""
    from qa import store
    from qa.embedding import get_query_embedder

    settings = _settings(index=index, model=model)
    embedder = get_query_embedder(settings)
    gen, warnings = store.open_live(settings.index, embedder.fingerprint)
    m = gen.manifest
    if as_json:
        click.echo(json.dumps(m, indent=1, ensure_ascii=False))
        return
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    c = m["counts"]
    size = sum(f["bytes"] for f in m["files"].values())
    click.echo(
        f"index       {settings.index.resolve()}  (generation {m['generation']}, "
        f"format {m['format_version']}, qa {m['qa_version']})"
    )
    click.echo(f"built       {m['created']}")
    click.echo(
        f"model       {m['model']['name']}  dim {m['model']['dimension']}  "
        f"sha256 {m['model']['fingerprint'][:12]}  embedded in {m['model'].get('precision', 'float32')}"
    )
    click.echo(f"questions   encoded with {getattr(embedder, 'note', type(embedder).__name__)}")
    click.echo(f"metric      {m['metric']}")
    click.echo(
        f"chunking    {m['chunking']['max_tokens']} tokens max, overlap "
        f"{m['chunking']['overlap_sentences']} sentence(s)"
    )
    click.echo(
        f"counts      {c['documents']} documents, {c['chunks']} chunks, "
        f"{c['units']} sentences, {c['skipped']} skipped; {size / 2**20:.1f} MiB on disk"
    )
    for d in m["documents"]:
        click.echo(f"  {d['id']}  {d['format']}  {d['size']} bytes  {d['chunks']} chunks")
    for s in m["skipped"]:
        click.echo(f"  skipped {s['id']}: {s['reason']}")


@main.command("serve")
@_INDEX_OPT
@_CORPUS_OPT
@_MODEL_OPT
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback only by default)."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="Port to listen on."
)
@_edge
def serve_cmd(index: Path | None, corpus: Path | None, model: Path | None, host: str, port: int) -> None:
    """Serve the chat UI at http://HOST:PORT; builds the index first if there is none."""
    import time

    from qa import store
    from qa.building import build_index
    from qa.embedding import get_query_embedder

    settings = _settings(index=index, corpus=corpus, model=model)
    if not store.generation_names(settings.index):
        click.echo(f"No index at {settings.index}: building one from {settings.corpus} ...", err=True)
        last: dict[str, float] = {}

        def lines(stage: str, done: int, total: int) -> None:  # visible without a terminal too
            now = time.monotonic()
            if done >= total or now - last.get(stage, 0.0) >= 2.0:
                last[stage] = now
                click.echo(f"  {stage} {done}/{total}", err=True)

        progress = _bar_progress() if sys.stderr.isatty() else lines
        report = build_index(settings, progress=progress)  # nothing served yet: all build threads
        click.echo(report.summary(), err=True)
    from qa.app import create_app, launch

    app = create_app(settings)
    embedder = get_query_embedder(settings)  # the app's query model (numpy: no torch until a rebuild)
    t0 = time.perf_counter()
    embedder.encode(["warm up"])  # load the model now, so the first question is fast
    click.echo(f"Model loaded in {time.perf_counter() - t0:.1f}s.", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: serving on {host} without authentication: anyone who can reach it "
            "can read, upload and delete documents",
            err=True,
        )
    click.echo(
        f"Serving on http://{'[' + host + ']' if ':' in host else host}:{port} (Ctrl+C stops)", err=True
    )
    launch(app, settings, host=host, port=port, quiet=True)


if __name__ == "__main__":  # pragma: no cover
    main()
