"""The question path never imports torch & co. (issue 15: cold start).

Each command runs in a fresh interpreter under ``python -X importtime``, which lists every
module imported; the test fails if one of ``HEAVY`` (or a submodule) is among them. To cover
a new command on the question path (e.g. ``qa chat``), add its argv to ``QUESTION_COMMANDS``.
Runs with the real model: the index must carry its fingerprint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import qa
from tests.helpers.serving import free_port, serving

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"
HEAVY = ("torch", "transformers", "sentence_transformers", "sklearn", "pandas", "gradio")

# argv after ``qa``; "{index}" is replaced by the built index's folder
QUESTION_COMMANDS = [
    pytest.param(["ask", "--index", "{index}", QUESTION], "Foxconn", id="ask"),
    pytest.param(
        ["ask", "--index", "{index}", "--json", "--k", "2", QUESTION], '"found": true', id="ask-json"
    ),
    pytest.param(["info", "--index", "{index}"], "numpy", id="info"),
    # qa chat reads the questions from standard input (QUESTION, then a follow-up)
    pytest.param(["chat", "--index", "{index}", "--json"], '"used_history": true', id="chat-json"),
]
CHAT_INPUT = f"{QUESTION}\nWhere will they build it?\n"
API_SCRIPT = """
import sys
import qa
answer = qa.Index.load(sys.argv[1]).ask(sys.argv[2])
print("found" if answer.found and "Foxconn" in answer.quotes[0].text else "wrong")
"""


def imported_modules(stderr: str) -> set[str]:
    """Names of every module in a ``-X importtime`` report."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imports")
    qa.build_index(ROOT / "corpus", root / "index")
    return root / "index"


def _run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(("argv", "expect"), QUESTION_COMMANDS)
def test_question_commands_import_no_torch(index_dir: Path, argv: list[str], expect: str) -> None:
    proc = _run(["-m", "qa.cli", *(a.replace("{index}", str(index_dir)) for a in argv)], CHAT_INPUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert expect in proc.stdout
    modules = imported_modules(proc.stderr)
    assert "qa.index" in modules or "qa.store" in modules  # the report really covers qa
    assert heavy_in(modules) == []


def test_python_api_question_imports_no_torch(index_dir: Path) -> None:
    proc = _run(["-c", API_SCRIPT, str(index_dir), QUESTION])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "found"
    modules = imported_modules(proc.stderr)
    assert "qa.encoder" in modules and heavy_in(modules) == []


def test_forcing_sentence_transformers_does_import_torch(index_dir: Path) -> None:
    """The check above can fail: the old path is seen importing torch."""
    env_argv = ["-c", "import os; os.environ['QA_QUERY_ENCODER'] = 'sentence-transformers'\n" + API_SCRIPT]
    proc = _run([*env_argv, str(index_dir), QUESTION])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "found"
    assert "torch" in heavy_in(imported_modules(proc.stderr))


@pytest.fixture
def serve_log(index_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``qa serve`` over the built index, under -X importtime; yields (url, stderr log)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "corpus", corpus)
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-X", "importtime", "-m", "qa.cli", "serve", "--corpus", str(corpus)]
    cmd += ["--index", str(index_dir), "--port", str(port)]
    with serving(cmd, port, log_path, env=env, cwd=tmp_path) as url:
        yield url, log_path


def test_serve_answers_without_torch(serve_log: tuple[str, Path]) -> None:
    from gradio_client import Client

    url, log_path = serve_log
    result = Client(url, verbose=False).predict(QUESTION, 2, api_name="/ask")
    assert result["found"] and "Foxconn" in result["quotes"][0]["text"]
    modules = imported_modules(log_path.read_text())
    assert "gradio" in modules and "qa.encoder" in modules
    # gradio brings pandas; nothing brings torch until a rebuild needs the model
    assert [m for m in heavy_in(modules) if m.split(".")[0] not in ("gradio", "pandas")] == []
