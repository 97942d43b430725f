"""The command line: ``qa index``, ``qa ask``, ``qa info``, ``qa serve``, ``qa eval``.

The library raises QAError subclasses; this edge turns them into one-line messages on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from qa.errors import QAError
from qa.sanitize import printable, printable_json

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
            click.echo(f"error: {printable(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qa", message="qa %(version)s")
def main() -> None:
    """qa: answers from your documents as verbatim quotes you can check."""
    _printable_logs()


def _printable_logs() -> None:
    """qa's log warnings reach the terminal through logging's last-resort handler when
    nothing is configured: give them one that escapes them (same format otherwise)."""
    import logging

    class Printable(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    log = logging.getLogger("qa")
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(Printable("%(message)s"))
        log.addHandler(handler)


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
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (the report is still printed).")
@click.option(
    "--watch", is_flag=True, help="Keep running: update the index when the corpus changes (Ctrl+C stops)."
)
@click.option(
    "--ray",
    "ray_address",
    metavar="auto|ADDRESS",
    default=None,
    help="Parse and embed on Ray (extra qa[ray]): 'auto' joins $RAY_ADDRESS or starts a local "
    "instance; ADDRESS (host:port) joins that cluster.",
)
@click.option(
    "--ship-bytes", is_flag=True, help="With --ray: send file bytes to the workers (no shared filesystem)."
)
@_edge
def index_cmd(
    corpus: Path | None,
    index: Path | None,
    model: Path | None,
    full: bool,
    as_json: bool,
    quiet: bool,
    watch: bool,
    ray_address: str | None,
    ship_bytes: bool,
) -> None:
    """Build or update the index: only new and changed documents are processed."""
    import contextlib
    from dataclasses import asdict

    from qa.building import BuildReport, build_index
    from qa.progress import cli_progress

    settings = _settings(corpus=corpus, index=index, model=model)
    progress = cli_progress(sys.stderr, quiet=quiet)

    def emit(report: BuildReport) -> None:
        click.echo(printable_json(asdict(report), indent=1) if as_json else printable(report.summary()))

    with contextlib.ExitStack() as stack:
        mapper = None
        if ray_address is not None:
            from qa.distributed import RayMapper

            mapper = stack.enter_context(RayMapper(ray_address, ship_bytes=ship_bytes))
        if watch:
            from qa.watching import watch_index

            say = lambda m: click.echo(m, err=True)  # noqa: E731
            watch_index(settings, full=full, progress=progress, emit=emit, say=say, mapper=mapper)
            return
        emit(build_index(settings, full=full, progress=progress, mapper=mapper))


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
        click.echo(f"warning: {printable(w)}", err=True)
    answer = idx.ask(" ".join(question), k)
    if as_json:
        click.echo(printable_json(answer.to_dict()))
        return
    print_answer(answer)


def print_answer(answer: Any) -> None:
    """An Answer for people: the phrase first, then the answer, its confidence and the quotes
    (highlight underlined, phrase bold); supporting quotes first, the rest as "more passages";
    when nothing was found, the nearest passages without highlights. Document text is data:
    ``printable`` shows its control characters instead of obeying them."""
    if answer.found:
        if answer.phrase is not None:
            phrase = printable(answer.phrase.text)
            click.echo(click.style("Answer: ", bold=True) + click.style(phrase, bold=True))
            click.echo(f"  \u201c{printable(answer.answer)}\u201d")
        else:
            click.echo(click.style("Answer: ", bold=True) + printable(answer.answer))
        click.echo(f"  confidence {answer.confidence:.2f}")
    else:
        click.echo(
            click.style("Not found in the documents", bold=True) + f" (confidence {answer.confidence:.2f})."
        )
        if answer.quotes:
            click.echo("Nearest passages (they do not answer the question):")
    more = False
    for i, q in enumerate(answer.quotes, 1):
        if answer.found and not q.supports and not more:
            click.echo("\nMore passages:")
            more = True
        where = f"{q.doc}" + (f", {q.location}" if q.location else "")
        click.echo(f"\n[{i}] {printable(where)}  [{q.start}:{q.end}]  score {q.score:.3f}")
        if not answer.found or not q.supports:
            click.echo("  > " + printable(q.text))
            continue
        a, b = q.highlight[0] - q.start, q.highlight[1] - q.start
        marked = q.text[a:b]
        if i == 1 and answer.phrase is not None:
            pa, pb = answer.phrase.start - q.highlight[0], answer.phrase.end - q.highlight[0]
            marked = (
                click.style(printable(marked[:pa]), underline=True)
                + click.style(printable(marked[pa:pb]), bold=True, underline=True)
                + click.style(printable(marked[pb:]), underline=True)
            )
        else:
            marked = click.style(printable(marked), underline=True)
        click.echo("  > " + printable(q.text[:a]) + marked + printable(q.text[b:]))


@main.command("chat")
@_INDEX_OPT
@_MODEL_OPT
@click.option("--k", "k", type=click.IntRange(1, 100), default=None, help="Quotes per answer (default 5).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Read one question per line from standard input, write one JSON answer per line.",
)
@_edge
def chat_cmd(index: Path | None, model: Path | None, k: int | None, as_json: bool) -> None:
    """Chat in the terminal: follow-up questions use the conversation ("Where will they build
    it?"). Commands: :new starts over, :quit (or Ctrl-D) leaves; arrow keys recall questions."""
    from qa.index import Index

    settings = _settings(index=index, model=model)
    idx = Index.load(settings.index, settings)
    for w in idx.warnings:
        click.echo(f"warning: {w}", err=True)
    chat = idx.conversation()
    if as_json:
        for line in sys.stdin:
            question = line.strip()
            if not question:
                continue
            try:
                click.echo(printable_json(chat.ask(question, k).to_dict()))
            except QAError as exc:  # one bad line must not end a script's session
                click.echo(printable_json({"question": question, "error": str(exc)}))
            sys.stdout.flush()
        return
    with contextlib.suppress(ImportError):  # not on every platform; plain input() still works
        import readline  # noqa: F401  (line editing and arrow-key recall for input())
    click.echo("Ask a question about your documents (:new starts over, :quit leaves).", err=True)
    while True:
        try:
            question = input("? ").strip()
        except EOFError:
            click.echo("", err=True)
            return
        if not question:
            continue
        if question in (":quit", ":q", ":exit"):
            return
        if question in (":new", ":reset"):
            chat.reset()
            click.echo("New conversation.", err=True)
            continue
        try:
            answer = chat.ask(question, k)
        except QAError as exc:
            click.echo(f"error: {printable(str(exc))}", err=True)
            continue
        if answer.used_history:
            click.echo(click.style(f"Searched for: {printable(answer.query)}", dim=True))
        print_answer(answer)
        click.echo("")


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
        click.echo(printable(text))
        return
    for key, value in result.items():
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            for sub, values in value.items():
                click.echo(f"{key + ' ' + sub:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
        elif isinstance(value, dict):
            numbers = {k: v for k, v in value.items() if isinstance(v, int | float)}
            click.echo(f"{key:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in numbers.items()))
        elif isinstance(value, float):
            click.echo(f"{key:28s} {value:.4f}")
        else:
            click.echo(printable(f"{key:28s} {value}"))


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
    help="Write a PNG of recall@k for dense, BM25, fused and qa, and PNG-reliability.png, the "
    "reliability diagram of the confidence (needs matplotlib).",
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
        reliability = plot.with_name(plot.stem + "-reliability" + plot.suffix)
        evaluation.plot_reliability(result, reliability, f"{file.name}: {result['questions']} questions")
        click.echo(f"wrote {plot} and {reliability}", err=True)


@eval_group.command("questions")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--corpus",
    "corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder of the documents the questions are about (indexed on its own).",
)
@_WORK_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@_edge
def eval_questions_cmd(file: Path, corpus: Path, work: Path | None, as_json: bool, out: Path | None) -> None:
    """Ask the questions of a JSONL FILE (answerable, near-miss, off-topic; format in
    tests/data/smalldocs/README.md) about the documents in --corpus."""
    from qa import evaluation
    from qa.building import build_index
    from qa.index import Index

    settings = _settings()
    questions = evaluation.load_questions(file)
    index_dir = (work or Path(".eval-cache") / file.parent.name) / "index"
    build_index(settings, corpus=corpus, index=index_dir, progress=_bar_progress())
    result = evaluation.eval_questions(questions, Index.load(index_dir, settings), _bar_progress())
    _emit({"file": str(file), "corpus": str(corpus), **result}, as_json, out)


@eval_group.command("followups")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--squad",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The SQuAD file the conversations were made from (its paragraphs are indexed).",
)
@_WORK_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the JSON here.")
@_edge
def eval_followups_cmd(file: Path, squad: Path, work: Path | None, as_json: bool, out: Path | None) -> None:
    """Ask the conversations of FILE (made by make_followups.py) turn by turn: passage recall@1
    of follow-ups in conversation, alone and in their original wording, and of topic switches."""
    from qa import evaluation

    settings = _settings()
    docs, _ = evaluation.load_squad(squad)
    conversations = evaluation.load_followups(file, squad)
    index = evaluation.prepare_index(
        docs, work or Path(".eval-cache") / squad.stem, settings, None, _bar_progress()
    )
    result = evaluation.eval_followups(conversations, index, _bar_progress())
    _emit({"file": str(file), "squad": str(squad), **result}, as_json, out)


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
    m = gen.meta
    if as_json:
        click.echo(printable_json(gen.manifest, indent=1))
        return
    for w in warnings:
        click.echo(f"warning: {printable(w)}", err=True)
    c = m.counts
    size = sum(f.bytes for f in m.files.values())
    click.echo(
        printable(
            f"index       {settings.index.resolve()}  (generation {m.generation}, "
            f"format {m.format_version}, qa {m.qa_version})"
        )
    )
    click.echo(printable(f"built       {m.created}"))
    click.echo(
        printable(
            f"model       {m.model.name}  dim {m.model.dimension}  "
            f"sha256 {m.model.fingerprint[:12]}  embedded in {m.model.precision}"
        )
    )
    click.echo(printable(f"questions   encoded with {getattr(embedder, 'note', type(embedder).__name__)}"))
    click.echo(printable(f"metric      {m.metric}"))
    click.echo(
        f"chunking    {m.chunking.max_tokens} tokens max, overlap {m.chunking.overlap_sentences} sentence(s)"
    )
    click.echo(
        f"counts      {c.documents} documents, {c.chunks} chunks, "
        f"{c.units} sentences, {c.skipped} skipped; {size / 2**20:.1f} MiB on disk"
    )
    for d in m.documents:
        click.echo(printable(f"  {d.id}  {d.format}  {d.size} bytes  {d.chunks} chunks"))
    for s in m.skipped:
        click.echo(printable(f"  skipped {s.id}: {s.reason}"))


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
@click.option("--watch", is_flag=True, help="Update the index in the background when the corpus changes.")
@click.option(
    "--auth-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Require a login: a file of user:password lines (chmod 600); or set $QA_SERVE_AUTH=user:password.",
)
@click.option(
    "--no-auth", is_flag=True, help="Serve a non-loopback --host without a login (trusted networks)."
)
@click.option("--read-only", is_flag=True, help="Chat only: no upload, delete or rebuild (page and API).")
@_edge
def serve_cmd(
    index: Path | None,
    corpus: Path | None,
    model: Path | None,
    host: str,
    port: int,
    watch: bool,
    auth_file: Path | None,
    no_auth: bool,
    read_only: bool,
) -> None:
    """Serve the chat UI at http://HOST:PORT; builds the index first if there is none.

    Any --host but loopback needs a login (--auth-file or $QA_SERVE_AUTH) or --no-auth.
    """
    import time

    from qa import store
    from qa.access import is_loopback, serve_auth
    from qa.building import build_index
    from qa.embedding import get_query_embedder
    from qa.errors import PortInUseError
    from qa.progress import cli_progress
    from qa.serving import check_port

    settings = _settings(index=index, corpus=corpus, model=model)
    auth = serve_auth(host, auth_file, no_auth)  # refused before anything is built or bound
    check_port(host, port)  # before the build and the model load, not after
    if not store.generation_names(settings.index):
        click.echo(f"No index at {settings.index}: building one from {settings.corpus} ...", err=True)
        # nothing served yet: all build threads; bars on a terminal, lines in a log
        report = build_index(settings, progress=cli_progress(sys.stderr))
        click.echo(printable(report.summary()), err=True)
    from qa.app import create_app, launch

    app = create_app(settings, watch=watch, read_only=read_only)
    embedder = get_query_embedder(settings)  # the app's query model (numpy: no torch until a rebuild)
    t0 = time.perf_counter()
    embedder.encode(["warm up"])  # load the model now, so the first question is fast
    click.echo(f"Model loaded in {time.perf_counter() - t0:.1f}s.", err=True)
    if auth is None and not is_loopback(host):
        can = "read" if read_only else "read, upload and delete"
        click.echo(
            f"warning: serving on {host} without a login (--no-auth): "
            f"anyone who can reach it can {can} documents",
            err=True,
        )
    try:
        launch(app, settings, host=host, port=port, quiet=True, prevent_thread_lock=True, auth=auth)
    except OSError:  # taken since the check: the same one line, never "Serving on"
        raise PortInUseError(f"port {port} is in use; pass --port N") from None
    click.echo(
        f"Serving on http://{'[' + host + ']' if ':' in host else host}:{port} (Ctrl+C stops)"
        + (f"; watching {settings.corpus} for changes" if watch else ""),
        err=True,
    )
    app.block_thread()


if __name__ == "__main__":  # pragma: no cover
    main()
