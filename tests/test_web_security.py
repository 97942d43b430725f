"""The web app's exposure, against a live in-process server (fake embedder, 127.0.0.1 only).

- Defaults: ``launch`` binds 127.0.0.1 unless told otherwise and never shares (the arguments
  it passes, the launched Blocks' attributes, the listening socket in /proc/net/tcp, and what
  ``qa serve`` passes and documents); the queue is bounded (max size, default concurrency, no
  unbounded event); the upload limit is set from ``max_file_mb`` (the 413 itself is checked by
  ``tests/test_app.py::test_api_endpoint_through_queue``).
- File routes serve nothing outside Gradio's cache: a secret file next to the cache, a corpus
  document, index files, /etc/passwd and a symlink planted inside the cache are requested
  through every route that maps a URL to a file, with plain, URL-encoded, double-encoded and
  backslash ``../`` sequences and absolute paths, sent raw (``http.client`` does not normalise
  the path as httpx does): every answer is 400/403/404 and never contains the file. A file
  uploaded the ordinary way is served (positive control), and a hostile upload name stays
  inside the cache.
- Hostile questions through the ``/ask`` API (gradio_client, and raw JSON the client cannot
  send): each gets an answer JSON or a clear error message, never a 500 or a traceback, and
  the server keeps answering.

Gradio's cache is pointed at a temp folder (``GRADIO_TEMP_DIR``) for this module.
"""

from __future__ import annotations

import http.client
import inspect
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr
import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from gradio_client import Client
from gradio_client.exceptions import AppError

import qa
from qa.app import DEFAULT_CONCURRENCY, QUEUE_SIZE, create_app, launch
from tests.conftest import DEFAULT_CORPUS, FakeEmbedder
from tests.helpers.serving import free_port, sse_last

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
REFUSED = {400, 403, 404}
ANSWER_KEYS = {"question", "found", "answer", "message", "generation", "quotes"}
QUOTE_KEYS = {"doc", "location", "start", "end", "text", "score", "highlight"}


class StrictEmbedder(FakeEmbedder):
    """The fake embedder with the real tokenizer's input rule: text must be valid UTF-8
    (a lone surrogate makes the real model raise a TypeError)."""

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        for text in texts:
            text.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
        return super().encode(texts, progress)


@dataclass
class Live:
    url: str
    port: int
    app: gr.Blocks
    settings: qa.Settings
    cache: Path  # Gradio's upload cache (GRADIO_TEMP_DIR)
    secret: Path  # outside the corpus, the index and the cache
    secret_text: str
    corpus_doc: Path
    corpus_text: str
    launch_kwargs: dict[str, Any]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The app built over a temp corpus, launched with ``launch``'s defaults (no host given)."""
    tmp = tmp_path_factory.mktemp("web")
    cache = tmp / "gradio-cache"
    corpus = tmp / "corpus"
    shutil.copytree(DEFAULT_CORPUS, corpus)
    secret_text = f"SECRET-{uuid.uuid4().hex}"
    secret = tmp / "secret.txt"
    secret.write_text(secret_text + "\n")
    corpus_text = f"CORPUS-{uuid.uuid4().hex} Zebras have black and white stripes."
    corpus_doc = corpus / "private-notes.txt"
    corpus_doc.write_text(corpus_text)
    settings = qa.Settings(corpus=corpus, index=tmp / "index", min_score=0.3, parse_timeout=30)
    fake = StrictEmbedder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(cache))
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        qa.build_index(settings=settings, embedder=fake)
        app = create_app(settings, fake)
        seen: dict[str, Any] = {}
        real_launch = app.launch

        def spy(*args: Any, **kwargs: Any) -> Any:
            assert not args, "launch passes keyword arguments only"
            seen.update(kwargs)
            return real_launch(**kwargs)

        mp.setattr(app, "launch", spy)
        port = free_port()
        launch(app, settings, port=port, prevent_thread_lock=True, quiet=True)  # no host: the default
        try:
            yield Live(
                f"http://127.0.0.1:{port}/",
                port,
                app,
                settings,
                cache,
                secret,
                secret_text,
                corpus_doc,
                corpus_text,
                seen,
            )
        finally:
            app.close()


def _raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or ``%2e``)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# ------------------------------------------------------------------------------ defaults


def test_launch_binds_loopback_and_never_shares(live: Live) -> None:
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
    kw = live.launch_kwargs
    assert kw["server_name"] == "127.0.0.1"
    assert kw["share"] is False  # False, not None: GRADIO_SHARE cannot turn it on
    assert kw["max_file_size"] == int(live.settings.max_file_mb * 2**20)
    assert kw["mcp_server"] is False
    app = live.app
    assert app.server_name == "127.0.0.1"
    assert app.share is False and app.share_url is None
    assert app.local_url == live.url
    assert app.max_file_size == int(live.settings.max_file_mb * 2**20)
    assert app.server is not None and app.server.config.host == "127.0.0.1"
    # The OS's view: the listening socket on our port is bound to 127.0.0.1, not a wildcard.
    proc_tcp = Path("/proc/net/tcp")
    if proc_tcp.exists():
        hexport = f"{live.port:04X}"
        listening = []
        for name in ("tcp", "tcp6"):
            table = Path("/proc/net") / name
            if not table.exists():
                continue
            for line in table.read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and local.rsplit(":", 1)[1] == hexport:  # 0A = LISTEN
                    listening.append((name, local.rsplit(":", 1)[0]))
        assert listening == [("tcp", "0100007F")], listening  # 127.0.0.1, little-endian hex


def test_qa_serve_defaults_to_loopback(
    monkeypatch: pytest.MonkeyPatch, settings: qa.Settings, fake: FakeEmbedder
) -> None:
    from qa import app as app_module
    from qa import cli, embedding

    help_text = CliRunner().invoke(cli.main, ["serve", "--help"]).output
    host_help = help_text[help_text.index("--host") : help_text.index("--port")]
    assert "loopback" in host_help and "[default:" in host_help and "127.0.0.1" in host_help
    qa.build_index(settings=settings, embedder=fake)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(embedding, "get_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_query_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_query_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(app_module, "launch", lambda app, s, **kw: calls.append(kw))
    checked: list[tuple[str, int]] = []  # the port check, without needing 7860 free on this machine
    monkeypatch.setattr("qa.serving.check_port", lambda host, port: checked.append((host, port)))
    args = ["serve", "--corpus", str(settings.corpus), "--index", str(settings.index)]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert calls == [
        {"host": "127.0.0.1", "port": 7860, "quiet": True, "prevent_thread_lock": True, "auth": None}
    ]
    assert checked == [("127.0.0.1", 7860)]
    assert "warning" not in result.output


def test_queue_is_bounded(live: Live) -> None:
    app = live.app
    assert app.enable_queue is not False
    queue = app._queue
    assert QUEUE_SIZE and DEFAULT_CONCURRENCY
    assert queue.max_size == QUEUE_SIZE
    assert queue.default_concurrency_limit == DEFAULT_CONCURRENCY
    fns = list(app.fns.values())
    ask = [fn for fn in fns if fn.api_name == "ask"]
    assert len(ask) == 1 and ask[0].queue is not False

    def limit(fn: Any) -> int | None:  # as gradio's Queue.create_event_queue_for_fn resolves it
        lim = fn.concurrency_limit
        return queue.default_concurrency_limit if lim == "default" else lim

    assert limit(ask[0]) == DEFAULT_CONCURRENCY
    unbounded = [fn.name for fn in fns if fn.queue is not False and limit(fn) is None]
    assert not unbounded, f"events with unbounded concurrency: {unbounded}"
    # The queue the server really uses for /ask (created at its first event).
    Client(live.url, verbose=False).predict(QUESTION, 1, api_name="/ask")
    assert queue.event_queue_per_concurrency_id[ask[0].concurrency_id].concurrency_limit == (
        DEFAULT_CONCURRENCY
    )


# ------------------------------------------------------------------------------ file routes


def _traversals(target: Path, start: Path) -> list[str]:
    """Ways of naming ``target`` from inside ``start``: plain and encoded ``../`` chains."""
    up = len(start.parts) - 1  # enough to reach /
    rel = str(target).lstrip("/")
    out = []
    for sep in ("../", "%2e%2e%2f", "..%2f", "%2e%2e/", "%252e%252e%252f", "..%252f", "..\\", "..%5c"):
        out.append(str(start) + "/" + sep * up + rel)
        out.append(sep * (up + 2) + rel)  # relative to wherever the server resolves
    out.append(str(start) + "/./../" + target.name)  # one level up, where the secret lies
    out.append(str(start) + "/%2e%2e/" + target.name)
    out.append(str(start) + "/%252e%252e/" + target.name)
    return out


def test_file_routes_refuse_everything_outside_the_cache(live: Live) -> None:
    live.cache.mkdir(parents=True, exist_ok=True)
    # Planted inside the cache: a symlink to the secret and a symlinked folder above it.
    (live.cache / "link.txt").symlink_to(live.secret)
    (live.cache / "linkdir").symlink_to(live.secret.parent, target_is_directory=True)
    index_files = sorted(p for p in live.settings.index.rglob("*") if p.is_file())
    cwd_rel = os.path.relpath(live.secret, Path.cwd())
    targets = [
        str(live.secret),
        quote(str(live.secret), safe=""),  # %2Ftmp%2F...
        quote(quote(str(live.secret), safe=""), safe=""),  # double-encoded
        "/" + str(live.secret),  # //tmp/...
        cwd_rel,
        "file://" + str(live.secret),
        f"http://127.0.0.1:{live.port}/gradio_api/file={live.secret}",  # the server fetching itself
        str(live.corpus_doc),
        str(live.cache / "link.txt"),
        str(live.cache / "linkdir" / live.secret.name),
        "/etc/passwd",
        "../../../../../../../../etc/passwd",
        "%2e%2e%2f" * 8 + "etc%2fpasswd",
        "pyproject.toml",  # relative to the server's working folder
        *(str(p) for p in index_files[:3]),
        *_traversals(live.secret, live.cache),
        *_traversals(Path("/etc/passwd"), live.cache),
    ]
    prefixes = [
        "/gradio_api/file=",
        "/gradio_api/file/",
        "/file=",
        "/file/",
        "/static/",
        "/assets/",
        "/svelte/",
        "/gradio_api/proxy=",
        "/proxy=",
        "/gradio_api/custom_component/x/client/y/",
    ]
    forbidden = {
        live.secret_text.encode(),
        live.corpus_text.encode(),
        b"root:x:0:0",
        b"[build-system]",
    }
    leaks, wrong = [], []
    for prefix in prefixes:
        for target in targets:
            path = prefix + target
            status, body = _raw_get(live.port, path)
            if any(f in body for f in forbidden):
                leaks.append((path, status))
            elif status not in REFUSED:
                wrong.append((path, status, body[:120]))
    assert not leaks, f"file content served for {len(leaks)} requests: {leaks[:10]}"
    assert not wrong, f"{len(wrong)} requests not refused: {wrong[:10]}"
    assert _raw_get(live.port, "/gradio_api/file=" + str(live.cache / "link.txt"))[0] == 403

    # Positive control: a file uploaded the ordinary way is served from the cache, so the
    # refusals above are the route's checks, not a broken route.
    content = f"UPLOADED-{uuid.uuid4().hex}".encode()
    up = httpx.post(live.url + "gradio_api/upload", files={"files": ("note.txt", content)}, timeout=30)
    assert up.status_code == 200
    (saved,) = up.json()
    assert Path(saved).resolve().is_relative_to(live.cache.resolve())
    status, body = _raw_get(live.port, "/gradio_api/file=" + quote(saved))
    assert status == 200 and body == content
    # A hostile upload name stays inside the cache.
    escape = f"escape-{uuid.uuid4().hex}.txt"
    up = httpx.post(
        live.url + "gradio_api/upload",
        files={"files": ("../../../" + escape, b"escaped?")},
        timeout=30,
    )
    assert up.status_code in (200, *REFUSED)
    if up.status_code == 200:
        (saved,) = up.json()
        assert Path(saved).resolve().is_relative_to(live.cache.resolve())
    for folder in list(live.cache.parents)[:4]:
        assert not (folder / escape).exists(), folder


# ------------------------------------------------------------------------------ hostile questions


HOSTILE: list[tuple[str, Any, str | None]] = [
    # (name, question, None for an answer | a regex the error message must match)
    ("empty", "", "question is empty"),
    ("whitespace", " \t\n\r\u00a0\u2003 ", "question is empty"),
    ("100 kB", "Foxconn " * 12_800, r"limit is 2000"),
    ("100 kB one word", "x" * 100_000, r"limit is 2000"),
    ("control characters", "Foxconn\x00\x01\x07\x1b[31m\x7f\u200b\u202e\ufeff hardware?", None),
    ("only NULs", "\x00\x00\x00", None),
    ("script", "<script>alert(1)</script><img src=x onerror=alert(2)> Foxconn?", None),
    ("markdown", "![x](http://127.0.0.2:9/x.png) [click](javascript:alert(1)) **Foxconn** `x` # H", None),
    ("html entities", "&lt;script&gt; &#x3C;b&#x3E; &amp; Foxconn", None),
    ("chinese", "富士康与OpenAI合作制造什么？", None),
    ("arabic", "مع من تتعاون OpenAI لتصنيع الأجهزة؟", None),
    ("devanagari + emoji", "फ़ॉक्सकॉन क्या बनाएगा? 🤖🏭 👩🏽‍💻", None),
    ("right-to-left override", "\u202eFoxconn\u202c AI hardware", None),
    ("2000 chars", "a " * 999 + "a", None),
]


def _check_answer(res: Any, corpus_ids: set[str]) -> None:
    assert isinstance(res, dict) and set(res) >= ANSWER_KEYS, res
    assert isinstance(res["found"], bool) and isinstance(res["quotes"], list)
    for q in res["quotes"]:
        assert set(q) >= QUOTE_KEYS and q["doc"] in corpus_ids and q["text"]


def test_hostile_questions_answer_or_refuse_clearly(live: Live, capfd: pytest.CaptureFixture[str]) -> None:
    client = Client(live.url, verbose=False)
    corpus_ids = {p.name for p in live.settings.corpus.iterdir()}
    problems = []
    for name, question, error in HOSTILE:
        try:
            res = client.predict(question, 3, api_name="/ask")
        except AppError as exc:
            msg = str(exc)
            if error is None or not re.search(error, msg):
                problems.append((name, f"unexpected error: {msg[:200]}"))
            continue
        if error is not None:
            problems.append((name, "answered, expected a refusal"))
            continue
        _check_answer(res, corpus_ids)
    for k in (0, -1, 101, 10**12, "abc", None, "3; DROP TABLE"):
        with pytest.raises(AppError, match=r"^K must be (between|a whole number)"):
            client.predict("Foxconn", k, api_name="/ask")
    assert not problems, problems
    res = client.predict(QUESTION, 3, api_name="/ask")  # still answering
    assert res["found"] is True and any("Foxconn" in q["text"] for q in res["quotes"])
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]


def _call(port: int, body: bytes) -> tuple[int, str, str]:
    """POST raw JSON to /gradio_api/call/ask; return (status, SSE event, SSE data)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/gradio_api/call/ask", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            return resp.status, "", raw.decode("utf-8", "replace")
        event_id = json.loads(raw)["event_id"]
        conn.request("GET", f"/gradio_api/call/ask/{event_id}")
        resp = conn.getresponse()
        stream = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    return (resp.status, *sse_last(stream))


def test_raw_api_payloads_never_500(live: Live, capfd: pytest.CaptureFixture[str]) -> None:
    corpus_ids = {p.name for p in live.settings.corpus.iterdir()}
    answers = [
        b'{"data": ["Foxconn \\ud800 hardware", 3]}',  # lone surrogates: not encodable as UTF-8
        b'{"data": ["\\udfff\\ud800", 3]}',
        b'{"data": ["Foxconn", 3, ["Who is OpenAI partnering with?"]]}',  # history: earlier questions
        b'{"data": ["Foxconn", 3, null]}',
    ]
    for body in answers:
        status, event, data = _call(live.port, body)
        assert (status, event) == (200, "complete"), (body, status, data)
        _check_answer(json.loads(data)[0], corpus_ids)
        assert "\\ud8" not in data and "\\udf" not in data  # the lone surrogates were replaced
    refusals = [
        (b'{"data": ["Foxconn", NaN]}', "K must be a whole number"),
        (b'{"data": ["Foxconn", Infinity]}', "K must be a whole number"),
        (b'{"data": ["Foxconn", "1e999"]}', "K must be a whole number"),
        (b'{"data": [["a", "list"], 3]}', "question is empty"),
        (b'{"data": [{"a": 1}, 3]}', "question is empty"),
        (b'{"data": [12345, 3]}', "question is empty"),
        (b'{"data": ["Foxconn", 3, "extra"]}', "History must be a list of earlier questions"),
        (b'{"data": ["Foxconn", 3, [1, {"a": 2}]]}', "History must be a list of earlier questions"),
    ]
    for body, msg in refusals:
        status, event, data = _call(live.port, body)
        assert (status, event) == (200, "error"), (body, status, data)
        assert msg in json.loads(data)["error"], (body, data)
    for body in (b"not json", b'{"data": "x"}', b"[" * 10_000, b'{"data": [' + b'"x",' * 5000 + b"1]}"):
        status, event, data = _call(live.port, body)
        assert status < 500, (body[:40], status, data[:200])
    status, event, data = _call(live.port, json.dumps({"data": [QUESTION, 3]}).encode())
    assert (status, event) == (200, "complete") and json.loads(data)[0]["found"] is True
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
