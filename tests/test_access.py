"""Who may change the corpus (issue 14, item 10), proven through the API, not the page.

- The harness first shows the problem is real: on the ordinary app, a raw queue call to the
  page's private delete event deletes a corpus file and one to the rebuild event builds.
- ``--read-only``: every event the app registers is called with corpus-changing payloads
  through the queue API; the corpus and the index stay as they were; ``/ask`` still answers.
- A login (Gradio ``auth``): without it the queue, the call API and the config are refused
  (401) and the corpus is untouched; with it gradio_client answers.
- ``qa serve --host`` beyond loopback refuses to start without credentials (from a file or
  ``QA_SERVE_AUTH``, never argv) unless ``--no-auth``; it refuses before building anything.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from gradio_client import Client

import qa
from qa import cli, store
from qa.access import AUTH_ENV, is_loopback, load_credentials, serve_auth
from qa.app import create_app, launch
from qa.errors import ConfigError
from tests.conftest import DEFAULT_CORPUS, FakeEmbedder
from tests.helpers.serving import free_port

QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
DOC = "openai-foxconn-ai-hardware.txt"
LOGIN = ("ann", "correct horse battery staple")


def _queue_call(
    url: str,
    fn_index: int,
    data: list[Any],
    cookies: httpx.Cookies | None = None,
    session: str | None = None,
) -> Any:
    """Call event ``fn_index`` through Gradio's queue as a browser would (in ``session``, or
    a new one); return the final message, or the HTTP status when the join is refused."""
    session = session or uuid.uuid4().hex[:12]
    body = {
        "data": data,
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": None,
        "trigger_id": None,
    }
    joined = httpx.post(url + "gradio_api/queue/join", json=body, cookies=cookies, timeout=30)
    if joined.status_code != 200:
        return joined.status_code
    stream_url = url + f"gradio_api/queue/data?session_hash={session}"
    with httpx.stream("GET", stream_url, cookies=cookies, timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") in ("process_completed", "unexpected_error", "close_stream"):
                    return message
    return None


def _state(settings: qa.Settings) -> tuple[list[str], list[str]]:
    corpus = sorted(p.relative_to(settings.corpus).as_posix() for p in settings.corpus.rglob("*"))
    return corpus, store.generation_names(settings.index)


@pytest.fixture
def served(
    settings: qa.Settings, fake: FakeEmbedder, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Any]]:
    """(url, app) of the app over a built index; ``request.param`` = (read_only, auth)."""
    read_only, auth = request.param
    qa.build_index(settings=settings, embedder=fake)
    (settings.corpus / "notes.md").write_text("# Notes\n\nZebras have stripes.\n")
    app = create_app(settings, fake, read_only=read_only)
    port = free_port()
    launch(app, settings, port=port, prevent_thread_lock=True, quiet=True, auth=auth)
    try:
        yield f"http://127.0.0.1:{port}/", app
    finally:
        app.close()


def _fn_index(app: Any, name: str) -> int:
    return next(i for i, fn in app.fns.items() if fn.name == name)


@pytest.mark.parametrize("served", [(False, None)], indirect=True)
def test_private_events_are_reachable_through_the_queue(
    served: tuple[str, Any], settings: qa.Settings
) -> None:
    """The positive control: without read-only or a login, the page's events are an API."""
    url, app = served
    # a delete is asked, then confirmed, in one session (the pending name is session state)
    session = uuid.uuid4().hex[:12]
    asked = _queue_call(url, _fn_index(app, "on_delete_ask"), [DOC], session=session)
    assert isinstance(asked, dict) and asked["success"], asked
    done = _queue_call(url, _fn_index(app, "on_delete_confirm"), [DOC], session=session)
    assert isinstance(done, dict) and done["success"], done
    assert not (settings.corpus / DOC).exists()
    before = store.generation_names(settings.index)
    done = _queue_call(url, _fn_index(app, "on_rebuild"), [])
    assert isinstance(done, dict) and done["success"], done
    assert len(store.generation_names(settings.index)) == len(before) + 1


# Payloads aimed at upload (file data), delete (a document id) and rebuild (nothing).
PAYLOADS: list[list[Any]] = [
    [],
    [DOC],
    ["notes.md"],
    [[{"path": str(DEFAULT_CORPUS / DOC), "meta": {"_type": "gradio.FileData"}}]],
    [DOC, [], None],
]


@pytest.mark.parametrize("served", [(True, None)], indirect=True)
def test_read_only_registers_no_corpus_event(
    served: tuple[str, Any], settings: qa.Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    url, app = served
    names = {fn.name for fn in app.fns.values()}
    corpus_events = {"on_upload", "on_delete_ask", "on_delete_confirm", "on_restore", "on_rebuild", "refresh"}
    assert names.isdisjoint(corpus_events), names
    before = _state(settings)
    for fn_index in range(len(app.fns) + 3):  # every event, and indexes past the last one
        for data in PAYLOADS:
            _queue_call(url, fn_index, data)
    upload = httpx.post(url + "gradio_api/upload", files={"files": ("evil.txt", b"evil")}, timeout=30)
    assert upload.status_code in (200, 401, 403)  # Gradio's cache, never the corpus
    assert _state(settings) == before
    res = Client(url, verbose=False).predict(QUESTION, 2, api_name="/ask")
    assert res["found"] is True
    config = httpx.get(url + "config").text
    assert "notes.md" not in config  # the corpus listing is not served either
    tabs = [c["props"] for c in json.loads(config)["components"] if c.get("type") == "tabitem"]
    assert [t for t in tabs if t.get("label") == "Documents"] == []  # not on the page at all
    capfd.readouterr()


@pytest.mark.parametrize("served", [(False, [LOGIN])], indirect=True)
def test_login_guards_every_api_route(served: tuple[str, Any], settings: qa.Settings) -> None:
    url, app = served
    before = _state(settings)
    assert _queue_call(url, _fn_index(app, "on_delete_confirm"), [DOC]) == 401
    assert _queue_call(url, _fn_index(app, "on_rebuild"), []) == 401
    call = httpx.post(url + "gradio_api/call/ask", json={"data": [QUESTION, 2]}, timeout=30)
    assert call.status_code == 401
    assert httpx.get(url + "config", timeout=30).status_code == 401
    with pytest.raises(Exception):  # noqa: B017  (gradio_client raises its own types here)
        Client(url, verbose=False)
    bad = httpx.post(url + "login", data={"username": LOGIN[0], "password": "wrong"}, timeout=30)
    assert bad.status_code == 400
    assert _state(settings) == before
    res = Client(url, auth=LOGIN, verbose=False).predict(QUESTION, 2, api_name="/ask")
    assert res["found"] is True
    # a logged-in browser session may use the page's events (the login is the guard)
    login = httpx.post(url + "login", data={"username": LOGIN[0], "password": LOGIN[1]}, timeout=30)
    assert login.status_code == 200
    session = uuid.uuid4().hex[:12]
    _queue_call(url, _fn_index(app, "on_delete_ask"), ["notes.md"], cookies=login.cookies, session=session)
    done = _queue_call(
        url, _fn_index(app, "on_delete_confirm"), ["notes.md"], cookies=login.cookies, session=session
    )
    assert isinstance(done, dict) and done["success"]
    assert not (settings.corpus / "notes.md").exists()


# ------------------------------------------------------------------------------ qa serve


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_credentials_from_file_or_environment(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    path.write_text("# who may log in\nann:pw:with:colons\n\nbob: spaced pw\n")
    path.chmod(0o600)
    assert load_credentials(path, {}) == [("ann", "pw:with:colons"), ("bob", " spaced pw")]
    assert load_credentials(None, {AUTH_ENV: "carol:secret"}) == [("carol", "secret")]
    assert load_credentials(None, {}) == []
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by other users: chmod 600"):
        load_credentials(path, {})
    path.write_text("no colon here\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="line 1: expected user:password"):
        load_credentials(path, {})
    with pytest.raises(ConfigError, match="--no-auth conflicts"):
        serve_auth("0.0.0.0", None, True, {AUTH_ENV: "carol:secret"})


@pytest.fixture
def serve_calls(monkeypatch: pytest.MonkeyPatch, settings: qa.Settings, fake: FakeEmbedder) -> dict[str, Any]:
    """Run ``qa serve`` with its app, model and launch replaced by recorders."""
    from qa import app as app_module
    from qa import embedding

    qa.build_index(settings=settings, embedder=fake)
    calls: dict[str, Any] = {}

    class App:  # what qa serve does with the app once launched
        def block_thread(self) -> None:
            calls["blocked"] = True

    def create(s: qa.Settings, **kw: Any) -> App:
        calls["create_app"] = kw
        return App()

    monkeypatch.setattr(embedding, "get_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(embedding, "get_query_embedder", lambda *a, **k: fake)
    monkeypatch.setattr(app_module, "create_app", create)
    monkeypatch.setattr(app_module, "launch", lambda app, s, **kw: calls.setdefault("launch", kw))
    monkeypatch.setattr("qa.serving.check_port", lambda host, port: None)  # 7860 need not be free here
    monkeypatch.delenv(AUTH_ENV, raising=False)
    return calls


def _serve(settings: qa.Settings, *args: str, env: dict[str, str] | None = None) -> Any:
    base = ["serve", "--corpus", str(settings.corpus), "--index", str(settings.index)]
    return CliRunner().invoke(cli.main, [*base, *args], env=env)


def test_serve_beyond_loopback_refuses_without_a_login(
    serve_calls: dict[str, Any], settings: qa.Settings, tmp_path: Path
) -> None:
    shutil.rmtree(settings.index)  # the refusal comes before any build
    result = _serve(settings, "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert result.output.startswith("error: --host 0.0.0.0 can be reached from other machines")
    assert "--auth-file" in result.output and AUTH_ENV in result.output and "--no-auth" in result.output
    assert serve_calls == {} and not settings.index.exists()
    assert _serve(settings, "--host", "0.0.0.0", "--auth", "ann:pw").exit_code == 2  # no such option


def test_serve_with_no_auth_warns_and_serves(serve_calls: dict[str, Any], settings: qa.Settings) -> None:
    result = _serve(settings, "--host", "0.0.0.0", "--no-auth", "--read-only")
    assert result.exit_code == 0, result.output
    assert "warning: serving on 0.0.0.0 without a login (--no-auth)" in result.output
    assert serve_calls["launch"] == {
        "host": "0.0.0.0",
        "port": 7860,
        "quiet": True,
        "prevent_thread_lock": True,
        "auth": None,
    }
    assert serve_calls["create_app"] == {"watch": False, "read_only": True}


def test_serve_with_credentials_from_environment_or_file(
    serve_calls: dict[str, Any], settings: qa.Settings, tmp_path: Path
) -> None:
    result = _serve(settings, "--host", "0.0.0.0", env={AUTH_ENV: "ann:s3cret"})
    assert result.exit_code == 0, result.output
    assert serve_calls["launch"]["auth"] == [("ann", "s3cret")] and "warning" not in result.output
    assert serve_calls["create_app"] == {"watch": False, "read_only": False}
    serve_calls.clear()
    path = tmp_path / "logins"
    path.write_text("bob:hunter2\n")
    os.chmod(path, 0o600)
    result = _serve(settings, "--host", "10.1.2.3", "--auth-file", str(path))
    assert result.exit_code == 0, result.output
    assert serve_calls["launch"]["auth"] == [("bob", "hunter2")]


def test_serve_on_loopback_needs_no_login(serve_calls: dict[str, Any], settings: qa.Settings) -> None:
    result = _serve(settings)
    assert result.exit_code == 0, result.output
    assert serve_calls["launch"] == {
        "host": "127.0.0.1",
        "port": 7860,
        "quiet": True,
        "prevent_thread_lock": True,
        "auth": None,
    }
