"""The isolated parser worker: its framed protocol, and scripts without a ``__main__`` guard.

The worker is ``python -m qa.parse_worker`` in a subprocess, so it never re-imports the
caller's main module: the README's Python snippet saved as a script (no guard) builds an
index over a corpus with a PDF and a DOCX without re-running itself in the worker.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qa.isolation import encode_frame, read_frame
from qa.parse_worker import serve
from qa.parsing import IsolatedParser
from tests.test_documents import make_docx, make_pdf

ROOT = Path(__file__).resolve().parent.parent


def _corpus_with_pdf_and_docx(root: Path) -> Path:
    corpus = root / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    (corpus / "herons.pdf").write_bytes(make_pdf(["Grey herons nest in tall trees near lakes."]))
    (corpus / "llamas.docx").write_bytes(make_docx())
    return corpus


def _run_script(tmp_path: Path, code: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    # The project root is importable (tests.conftest) the way a user's checkout would be.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ------------------------------------------------------------------------------ frames


@pytest.mark.parametrize(
    "blobs", [[], [b""], [b"x" * 70_000, b"", "caf\u00e9 \ud800".encode("utf-8", "surrogatepass")]]
)
def test_frames_round_trip(blobs: list[bytes]) -> None:
    header = {"op": "parse", "fmt": "pdf", "note": "Überblick ✓"}
    stream = io.BytesIO(encode_frame(header, blobs) * 2)
    for _ in range(2):
        frame = read_frame(stream)
        assert frame is not None
        got, got_blobs = frame
        assert {k: v for k, v in got.items() if k != "blobs"} == header
        assert got_blobs == blobs
    assert read_frame(stream) is None


@pytest.mark.parametrize(
    "data",
    [
        encode_frame({"op": "x"}, [b"abc"])[:-1],  # cut inside a blob
        b"\x00\x00\x00\x10{}",  # cut inside the header
        (5).to_bytes(4, "big") + b"[1,2]",  # not an object
        (24).to_bytes(4, "big") + b'{"blobs": [-1, "three"]}',
        (2**31).to_bytes(4, "big"),  # an absurd header size
    ],
)
def test_malformed_frames_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        read_frame(io.BytesIO(data))


def test_worker_loop_answers_each_request_in_order() -> None:
    """The worker's loop, in-process: a good file, a bad one, an unknown request."""
    requests = (
        encode_frame({"op": "parse", "fmt": "html"}, [b"<h1>Title</h1><p>Body text.</p>"])
        + encode_frame({"op": "parse", "fmt": "docx"}, [b"not a zip"])
        + encode_frame({"op": "unpickle"}, [b"\x80\x04."])
    )
    out = io.BytesIO()
    serve(io.BytesIO(requests), out)
    out.seek(0)
    replies = []
    while (frame := read_frame(out)) is not None:
        replies.append(frame)
    assert [h["status"] for h, _ in replies] == ["ready", "ok", "error", "error"]
    header, blobs = replies[1]
    assert blobs == [b"Title\nBody text."] and header["locations"] == [[0, "Title"]]
    assert "not a valid .docx" in replies[2][0]["reason"]
    assert replies[3][0]["reason"] == "unknown request"


def test_parser_output_survives_the_pipe_exactly() -> None:
    """Text comes back character for character, non-BMP and non-Latin included."""
    body = "Zoë 🦙 مرحبا नमस्ते 漢字 \u0301e"
    with IsolatedParser(timeout=60) as parser:
        text, locations, _ = parser.parse("html", f"<h2>{body}</h2><pre>a\n\n  b</pre>".encode())
        assert parser.pid is not None
    assert text == f"{body}\na\n\n  b" and locations == [(0, body)]
    assert parser.pid is None  # closed with the context


# ------------------------------------------------------------------------------ scripts


def test_script_without_main_guard_builds_once(tmp_path: Path) -> None:
    """A script with no ``if __name__ == "__main__"`` guard runs once: the parser worker
    does not re-import it (multiprocessing's spawn did, and each re-run hit the build lock)."""
    _corpus_with_pdf_and_docx(tmp_path)
    runs = tmp_path / "runs.txt"
    code = f"""
import qa
from tests.conftest import FakeEmbedder

with open({str(runs)!r}, "a") as fh:
    fh.write("ran\\n")
report = qa.build_index("corpus", "index", embedder=FakeEmbedder())
print(report.summary())
"""
    done = _run_script(tmp_path, code, timeout=300)
    assert done.returncode == 0, done.stderr
    assert runs.read_text() == "ran\n", "the script's top level ran more than once"
    assert "Traceback" not in done.stderr and "BuildLockedError" not in done.stderr
    assert "3 added" in done.stdout and "0 failed" in done.stdout


def _readme_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README has no Python snippet under 'Python API'"
    return match.group(1)


@pytest.mark.model
def test_readme_python_snippet_runs_as_a_script(tmp_path: Path) -> None:
    """The README's snippet, pasted into script.py as is (no main guard), over the default
    corpus plus a PDF and a DOCX, with the real model."""
    code = _readme_snippet()
    assert "__main__" not in code
    _corpus_with_pdf_and_docx(tmp_path)
    done = _run_script(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BuildLockedError" not in done.stderr
    assert "3 added" in done.stdout and "0 failed" in done.stdout
    assert done.stdout.splitlines()[3].startswith("True ")  # found, after the 3-line summary
    assert "Foxconn" in done.stdout


def test_a_worker_that_died_while_idle_is_replaced_without_blaming_the_next_file() -> None:
    import signal
    import time

    with IsolatedParser(timeout=60) as parser:
        parser.parse("html", b"<p>warm up</p>")
        pid = parser.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, between two files
        proc = parser._worker._proc
        assert proc is not None
        deadline = time.monotonic() + 10
        while proc.poll() is None:  # bounded wait for the kill to land
            assert time.monotonic() < deadline, "the worker did not die"
            time.sleep(0.01)
        assert parser.parse("html", b"<p>next file</p>")[0] == "next file"
        assert parser.pid not in (None, pid)


def test_worker_that_ran_out_of_memory_answers_then_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a MemoryError the worker replies "fatal" and stops reading: a process at its
    memory cap may fail on the next file, which must get a fresh worker instead."""
    from qa import parsing

    def hungry(data: bytes) -> parsing.Parsed:
        raise MemoryError

    monkeypatch.setitem(parsing._PARSERS, "html", hungry)
    requests = encode_frame({"op": "parse", "fmt": "html"}, [b"<p>a</p>"]) + encode_frame(
        {"op": "parse", "fmt": "markdown"}, [b"# b"]
    )
    out = io.BytesIO()
    serve(io.BytesIO(requests), out)
    out.seek(0)
    replies = []
    while (frame := read_frame(out)) is not None:
        replies.append(frame[0])
    assert [r["status"] for r in replies] == ["ready", "error"]
    assert replies[1]["fatal"] is True and "too much memory" in replies[1]["reason"]
