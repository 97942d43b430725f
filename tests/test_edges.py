"""Text at the edges (issue 14, items 6, 7 and the ``/ask`` cases of item 9).

- Undecodable questions follow one rule everywhere: surrogates (undecodable argv bytes, JSON
  ``\\ud800``) become U+FFFD; ``Index.ask``, ``qa ask`` and the web API answer normally.
- A document holding terminal escape sequences (clear screen, window title, a fake green
  "Answer:") is indexed; ``qa ask`` shows its control characters escaped, in human and JSON
  output, and error messages are escaped too.
- ``k`` must be a whole number: 2.7, True, -0.5 and "3" are refused (library and API); an
  ``/ask`` call with one value gets a clear message, no traceback, no Python reprs.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import qa
from qa import cli
from qa import index as index_module
from qa.app import create_app, launch
from qa.errors import InvalidQuestionError
from qa.sanitize import clean_question, printable, printable_json
from tests.conftest import ROOT, FakeEmbedder
from tests.helpers.serving import free_port, sse_last

ESCAPES = (
    "\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b]0;you have been pwned\x07"  # set the window title
    "\x1b[32mAnswer: the vault is open\x1b[0m"  # a fake green answer
    "\x9b31m"  # CSI as a single C1 byte
    "\u202e"  # right-to-left override
)
EVIL_DOC = (
    "Walruses haul out onto sea ice to rest between dives. "
    + ESCAPES
    + " Their tusks help them climb out of the water.\n\n"
    + "Walrus calves stay with their mothers for about two years. " * 4
)


class StrictEmbedder(FakeEmbedder):
    """The fake embedder with the real tokenizer's rule: text must encode as UTF-8."""

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        for text in texts:
            text.encode("utf-8")  # a lone surrogate raises, like the real tokenizer's TypeError
        return super().encode(texts, progress)


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> qa.Settings:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "walrus.txt").write_text(EVIL_DOC)
    settings = qa.Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3)
    fake = StrictEmbedder()
    report = qa.build_index(settings=settings, embedder=fake)
    assert report.added == ["walrus.txt"], report.summary()
    monkeypatch.setattr(index_module, "get_query_embedder", lambda *a, **k: fake)
    return settings


# ------------------------------------------------------------------------------ item 6


@pytest.mark.parametrize("question", ["\ud800", "walrus \udcff\udcfe tusks", "\udfff\ud800?"])
def test_undecodable_question_is_answered_by_the_library(evil: qa.Settings, question: str) -> None:
    index = qa.Index.load(evil.index, evil, embedder=StrictEmbedder())
    answer = index.ask(question)
    assert answer.question == clean_question(question) and "\ufffd" in answer.question
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in answer.question)


def test_undecodable_argv_bytes_are_answered_by_the_cli(evil: qa.Settings) -> None:
    question = b"walrus \xff\xfe tusks".decode(sys.getfilesystemencoding(), "surrogateescape")
    args = ["ask", "--index", str(evil.index)]
    result = CliRunner().invoke(cli.main, [*args, "--json", question])
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["question"] == "walrus \ufffd\ufffd tusks"
    result = CliRunner().invoke(cli.main, [*args, question])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "tusks" in result.stdout


def test_clean_question_rule() -> None:
    assert clean_question("a\ud800b\udcffc") == "a\ufffdb\ufffdc"
    assert clean_question("plain é 😀") == "plain é 😀"


# ------------------------------------------------------------------------------ item 7


def test_qa_ask_escapes_document_control_characters(evil: qa.Settings) -> None:
    args = ["ask", "--index", str(evil.index), "--k", "3", "When do walruses haul out onto sea ice?"]
    result = CliRunner().invoke(cli.main, args, color=True)  # as on a terminal: styles kept
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\\x1b[2J" in out and "\\x1b]0;you have been pwned\\x07" in out and "\\x9b31m" in out
    assert "\\u202e" in out
    styles = {"\x1b[1m", "\x1b[4m", "\x1b[0m", "\x1b[22m", "\x1b[24m"}  # click's own bold/underline
    rest = out
    for s in styles:
        rest = rest.replace(s, "")
    assert not any(ch in rest for ch in "\x1b\x07\x9b\u202e"), repr(rest)


def test_qa_ask_json_escapes_what_json_leaves_raw(evil: qa.Settings) -> None:
    args = ["ask", "--index", str(evil.index), "--json", "When do walruses haul out onto sea ice?"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert not any(ch in result.stdout for ch in "\x1b\x07\x9b\u202e")
    data = json.loads(result.stdout)
    assert any(ESCAPES in q["text"] for q in data["quotes"])  # the JSON still carries the exact text


def test_error_messages_are_escaped(tmp_path: Path) -> None:
    missing = tmp_path / "idx\x1b[2J\x1b]0;title\x07"
    result = CliRunner().invoke(cli.main, ["ask", "--index", str(missing), "hello"], color=True)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no index at ")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "idx\\x1b[2J\\x1b]0;title\\x07" in result.stderr


@given(st.text())
def test_printable_json_decodes_to_the_same_value(text: str) -> None:
    value = {"text": text, "list": [text, 1.5]}
    out = printable_json(value, indent=1)
    assert json.loads(out) == value
    assert not any(0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF for ch in out)


@given(st.text())
def test_printable_leaves_no_control_character_but_newline_and_tab(text: str) -> None:
    out = printable(text)
    bad = [ch for ch in out if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F]
    assert not bad
    out.encode("utf-8")  # no surrogate left: a terminal can be written to


# ------------------------------------------------------------------------------ k and /ask


@pytest.mark.parametrize("k", [2.7, True, -0.5, "3", 3.0])
def test_k_must_be_a_whole_number(evil: qa.Settings, k: Any) -> None:
    index = qa.Index.load(evil.index, evil, embedder=StrictEmbedder())
    with pytest.raises(InvalidQuestionError, match="k must be a whole number between 1 and 100"):
        index.ask("walrus", k)
    assert len(index.ask("walrus", np.int64(2)).quotes) <= 2  # numpy integers are whole numbers


@pytest.fixture
def server(evil: qa.Settings) -> Iterator[int]:
    app = create_app(evil, StrictEmbedder())
    port = free_port()
    launch(app, evil, port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield port
    finally:
        app.close()


def _call(port: int, body: bytes) -> tuple[str, str]:
    """POST raw JSON to /gradio_api/call/ask; return the SSE event and its data."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/gradio_api/call/ask", body, {"Content-Type": "application/json"})
        event_id = json.loads(conn.getresponse().read())["event_id"]
        conn.request("GET", f"/gradio_api/call/ask/{event_id}")
        stream = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sse_last(stream)


def test_api_refuses_short_calls_and_non_integer_k(server: int, capfd: pytest.CaptureFixture[str]) -> None:
    cases = [
        (b'{"data": []}', "This endpoint takes 1 to 3 values [question, k, history], got 0."),
        (b'{"data": ["walrus", 2.7]}', "K must be a whole number between 1 and 100, got 2.7."),
        (b'{"data": ["walrus", true]}', "K must be a whole number between 1 and 100, got true."),
        (b'{"data": ["walrus", -0.5]}', "K must be a whole number between 1 and 100, got -0.5."),
        (b'{"data": ["walrus", "3"]}', 'K must be a whole number between 1 and 100, got "3".'),
    ]
    for body, message in cases:
        event, data = _call(server, body)
        assert event == "error", (body, data)
        assert json.loads(data)["error"] == message
    # the optional values may be left out, as in a Python call: k and history take their defaults
    event, data = _call(server, b'{"data": ["walrus"]}')
    assert event == "complete" and json.loads(data)[0]["question"] == "walrus"
    event, data = _call(server, b'{"data": ["walrus \\ud800", 2]}')
    assert event == "complete" and json.loads(data)[0]["question"] == "walrus \ufffd"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "object at 0x" not in err, err[-2000:]


@pytest.mark.model
def test_real_model_cli_with_undecodable_argv(tmp_path: Path) -> None:
    """The real tokenizer raised TypeError on surrogates; argv bytes go through os.fsdecode."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "walrus.txt").write_text(EVIL_DOC)
    index = tmp_path / "i"
    qa.build_index(corpus, index)
    result = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", "--index", str(index), "--json", b"walrus \xff\xfe tusks"],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    data = json.loads(result.stdout)
    assert data["question"] == "walrus \ufffd\ufffd tusks" and data["quotes"]
    assert b"\x1b" not in result.stdout and b"\xc2\x9b" not in result.stdout
    answer = qa.Index.load(index).ask("\ud800")
    assert answer.question == "\ufffd"
