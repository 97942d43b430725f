"""Isolation: risky work (parsing, PDF page rendering) in a child process with limits.

The child is started as ``python -P -m qa.parse_worker``: a fresh interpreter that imports
only qa's own modules, never the caller's main module (multiprocessing's spawn re-ran a
script's top-level code in every worker: a README snippet saved as ``script.py`` without a
``__main__`` guard re-entered ``build_index`` in each one). ``-P`` keeps the current folder off
the child's ``sys.path``, so a stray ``pypdf.py`` next to the caller cannot shadow a parser.

Parent and child talk over the child's stdin/stdout in frames, never pickle::

    4 bytes    big-endian length H of the header
    H bytes    the header: a JSON object (UTF-8); its "blobs" lists the size of each blob
    ...        the blobs' raw bytes, in order (file contents, extracted text, PNG images)

The parent waits for a reply with ``select`` and a deadline: a child that runs out of time is
killed, one that dies (signal, memory limit) is noticed at once by the end of its pipe, and
either way the next request starts a fresh child. Non-goals: parallel workers, Windows.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import site
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

Frame = tuple[dict[str, Any], list[bytes]]
# A header is a few hundred bytes (text travels as a blob): anything larger is a broken stream.
MAX_HEADER = 16 * 2**20
WORKER_MODULE = "qa.parse_worker"


class WorkerError(Exception):
    """The child process failed; subclasses say how. Internal: callers turn it into a reason."""


class WorkerStartError(WorkerError):
    """The child could not start or did not say it was ready."""


class WorkerTimeoutError(WorkerError):
    """The child did not answer within the time limit (it was killed)."""


class WorkerCrashError(WorkerError):
    """The child died while working (``how`` says: exit code or signal)."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


def encode_frame(header: dict[str, Any], blobs: Sequence[bytes] = ()) -> bytes:
    """One frame: length, JSON header (with the blob sizes), then the blobs."""
    body = json.dumps({**header, "blobs": [len(b) for b in blobs]}).encode("utf-8")
    return b"".join([len(body).to_bytes(4, "big"), body, *blobs])


def _parse_header(raw: bytes) -> dict[str, Any]:
    header = json.loads(raw.decode("utf-8"))
    sizes = header.get("blobs", []) if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise ValueError("malformed frame header")
    return header


def _split_blobs(header: dict[str, Any], payload: bytes) -> list[bytes]:
    blobs, at = [], 0
    for n in header["blobs"]:
        blobs.append(payload[at : at + n])
        at += n
    return blobs


def read_frame(stream: IO[bytes]) -> Frame | None:
    """Read one frame from a blocking stream (the child's side); None at end of stream.

    Raises:
        ValueError: the stream does not hold a well-formed frame.
    """
    head = _read_exactly(stream, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_HEADER:
        raise ValueError(f"frame header of {size} bytes")
    raw = _read_exactly(stream, size)
    if raw is None:
        raise ValueError("stream ended inside a frame")
    header = _parse_header(raw)
    payload = _read_exactly(stream, sum(header["blobs"]))
    if payload is None:
        raise ValueError("stream ended inside a frame")
    return header, _split_blobs(header, payload)


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    parts, left = [], n
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _child_env() -> dict[str, str]:
    """The caller's environment, plus where qa lives when that is not a site-packages folder
    (a source checkout put on ``sys.path`` at run time), and one BLAS thread: the child parses,
    it does no linear algebra, and every idle thread pool counts against its memory limit."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    if root not in sites:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), root) if p)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


class IsolatedWorker:
    """One child process at a time, started on first use and after a crash or timeout.

    Not thread-safe: callers serialise ``call`` (``IsolatedParser`` holds a lock).
    """

    def __init__(self, memory_bytes: int, start_timeout: float = 120.0) -> None:
        self.memory_bytes = memory_bytes
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one is running."""
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        """Start a child and wait for its "ready" frame (start-up time is no request's time)."""
        cmd = [sys.executable, "-P", "-m", WORKER_MODULE, "--memory-bytes", str(self.memory_bytes)]
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env(), close_fds=True
            )
        except OSError as exc:
            raise WorkerStartError(f"cannot start {sys.executable} ({exc.strerror or exc})") from exc
        self._proc = proc
        try:
            header, _ = self._exchange(b"", self.start_timeout)
        except WorkerTimeoutError:
            raise WorkerStartError(f"not ready after {self.start_timeout:g} s") from None
        except WorkerCrashError as exc:
            raise WorkerStartError(f"it exited at start ({exc.how}; see the messages above)") from None
        if header.get("status") != "ready":
            self.close()
            raise WorkerStartError(f"unexpected first reply {header!r}")
        return proc

    def call(self, header: dict[str, Any], blobs: Sequence[bytes], timeout: float) -> Frame:
        """Send one request and return the reply.

        Raises:
            WorkerStartError, WorkerTimeoutError, WorkerCrashError: the child is gone
                afterwards; the next call starts a new one.
        """
        if self._proc is not None and self._proc.poll() is not None:
            self.close()  # died while idle (e.g. the OOM killer): not this request's fault
        if self._proc is None:
            self._start()
        reply = self._exchange(encode_frame(header, blobs), timeout)
        if reply[0].get("fatal"):
            self.close()  # it exits after a fatal reply; the next request starts a new one
        return reply

    def _exchange(self, request: bytes, timeout: float) -> Frame:
        """Write ``request`` and read one frame back, both within ``timeout`` seconds."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None, "no child"
        deadline = time.monotonic() + timeout
        out_fd, in_fd = proc.stdout.fileno(), proc.stdin.fileno()
        os.set_blocking(out_fd, False)
        os.set_blocking(in_fd, False)
        pending = memoryview(request)
        got = bytearray()
        need = 4
        header: dict[str, Any] | None = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise WorkerTimeoutError
                readable, writable, _ = select.select([out_fd], [in_fd] if pending else [], [], left)
                if writable:
                    try:
                        pending = pending[os.write(in_fd, pending) :]
                    except BlockingIOError:
                        pass
                    except BrokenPipeError:
                        pending = pending[:0]  # the child died: its end of stdout says how
                if not readable:
                    continue
                try:
                    part = os.read(out_fd, max(need - len(got), 1 << 16))
                except BlockingIOError:
                    continue
                if not part:
                    raise WorkerCrashError(self._death())
                got += part
                if header is None and len(got) >= 4:
                    size = int.from_bytes(got[:4], "big")
                    if size > MAX_HEADER:
                        raise WorkerCrashError("it sent a malformed reply")
                    if len(got) >= 4 + size:
                        header = _parse_header(bytes(got[4 : 4 + size]))
                        need = 4 + size + sum(header["blobs"])
                    else:
                        need = 4 + size
                if header is not None and len(got) >= need:
                    start = need - sum(header["blobs"])
                    return header, _split_blobs(header, bytes(got[start:need]))
        except ValueError:  # undecodable header: the stream is broken, start afresh next time
            self.close()
            raise WorkerCrashError("it sent a malformed reply") from None

    def _death(self) -> str:
        """How the child ended (it closed its stdout: it is exiting or dead)."""
        proc = self._proc
        code = None
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(2)
        self.close()
        return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def close(self) -> None:
        """Stop the child, if any (kill: it may be stuck in a parser)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
