"""A Ray cluster on this machine for tests and benchmarks: a head and worker nodes, each its own
``ray start`` session on 127.0.0.1 only, with a token (RAY_AUTH_MODE=token); ``stop()``
ends every process of those sessions, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# One token for every cluster of a process: Ray's client keeps the first token it read.
TOKEN = secrets.token_hex(32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    address: str
    token: str
    sessions: list[int]  # session ids of the `ray start` process trees
    temp: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, every process of the sessions this fixture started."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in _pids_in_sessions(self.sessions) if p != os.getpid()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while _pids_in_sessions(self.sessions) and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)


def _pids_in_sessions(sessions: list[int]) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) in sessions:
                    out.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return out


def _start(args: list[str], env: dict[str, str], sessions: list[int]) -> None:
    """Run one `ray start` in a new session (its daemons stay in it) and wait for it."""
    proc = subprocess.Popen(
        args, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    sessions.append(proc.pid)
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed:\n{out[-3000:]}")


def start_cluster(nodes: int, extra_env: dict[str, str] | None = None, cpus: int = 1) -> Cluster:
    """A head (+ nodes - 1 workers), ``cpus`` each, on 127.0.0.1 only, with a fresh auth token."""
    temp = Path(tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp"))  # short: Ray's socket paths
    token = TOKEN
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
           **(extra_env or {})}  # fmt: skip
    env.pop("RAY_ADDRESS", None)
    common = ["--num-cpus", str(cpus), "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    cluster = Cluster(f"127.0.0.1:{port}", token, [], temp)
    try:
        # 0: Ray keeps 127.0.0.1 as it is and listens on loopback only (see qa.distributed)
        _start([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port),
                "--include-dashboard", "false", "--temp-dir", str(temp), *common],
               {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, cluster.sessions)  # fmt: skip
        for _ in range(nodes - 1):
            # 1: joining is allowed (a driver in this process may have set 0, see qa.distributed)
            joining = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
            _start([sys.executable, "-m", "tests.helpers.ray_node", "start", "--address", cluster.address,
                    *common], joining, cluster.sessions)  # fmt: skip
    except BaseException:
        cluster.stop()
        raise
    return cluster
