"""qa.distributed without a cluster: bad addresses fail fast in one line, rows round-trip."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa import distributed
from qa.errors import BuildError
from qa.parsing import parse
from qa.preparing import PrepareConfig, PrepareTask, prepare
from tests.conftest import DEFAULT_CORPUS, ROOT, FakeEmbedder


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


def test_unreachable_address_fails_fast_in_one_line() -> None:
    t = time.monotonic()
    with pytest.raises(BuildError) as err:
        distributed.RayMapper(f"127.0.0.1:{_closed_port()}").connect()
    assert time.monotonic() - t < 10
    message = str(err.value)
    assert "\n" not in message and "cannot reach the Ray cluster at 127.0.0.1:" in message
    assert "Connection refused" in message and "ray start --head" in message


@pytest.mark.parametrize("bad", ["nonsense", "host:port", ":6379"])
def test_malformed_address(bad: str) -> None:
    with pytest.raises(BuildError, match="is not an address: use HOST:PORT"):
        distributed.RayMapper(bad).connect()


def test_cli_unreachable_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qa.cli", "index", "--corpus", str(DEFAULT_CORPUS),
         "--index", str(tmp_path / "i"), "--ray", f"127.0.0.1:{_closed_port()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Ray cluster at 127.0.0.1:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "i").exists() or not any((tmp_path / "i").glob("gen-*"))


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1:6379", True), ("localhost:1", True), ("[::1]:6379", True), ("10.0.0.5:6379", False),
     ("ray.example:10001", False)],
)  # fmt: skip
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert distributed._is_loopback(address) is loopback


def test_prepared_rows_round_trip(tmp_path: Path, fake: FakeEmbedder) -> None:
    path = tmp_path / "doc.md"
    path.write_text("# Title\n\nFirst sentence here. Second one follows.\n\n## Part\n\nMore text.\n")
    config = PrepareConfig(max_tokens=8, overlap=1)
    done = prepare(PrepareTask("doc.md", str(path), path.stat().st_size), config, parse, fake.token_starts)
    assert done.document is not None and len(done.chunks) > 1
    assert distributed._prepared_from_row(distributed._prepared_row(done)) == done
    failed = prepare(PrepareTask("x.txt", str(tmp_path / "x.txt"), 1), config, parse, fake.token_starts)
    assert distributed._prepared_from_row(distributed._prepared_row(failed)) == failed


def test_embedder_spec_of_a_custom_embedder_is_the_embedder(fake: FakeEmbedder) -> None:
    assert distributed.spec_of(fake) is fake
