"""Run a build with the fake embedder and SIGKILL itself at the N-th file-system write step.

Usage: python -m tests.helpers.kill_build CORPUS INDEX N
Counts calls to open(..., write), np.save, faiss.write_index, os.fsync, os.rename, os.replace,
shutil.rmtree and sqlite3.connect, before and after each; at count N the process kills itself
with SIGKILL (no cleanup, no atexit). Prints the total count when the build completes.
"""

from __future__ import annotations

import builtins
import functools
import os
import shutil
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np

import qa
from tests.conftest import FakeEmbedder

TARGET = int(sys.argv[3])
count = 0


def step() -> None:
    global count
    count += 1
    if count == TARGET:
        os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner: Any, name: str, only_writes: bool = False) -> None:
    real = getattr(owner, name)

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        counted = not only_writes or any(c in str(mode) for c in "wax+")
        if counted:
            step()
        result = real(*args, **kwargs)
        if counted:
            step()
        return result

    setattr(owner, name, wrapper)


wrap(builtins, "open", only_writes=True)
for owner, name in [
    (np, "save"),
    (faiss, "write_index"),
    (os, "fsync"),
    (os, "rename"),
    (os, "replace"),
    (shutil, "rmtree"),
    (sqlite3, "connect"),
]:
    wrap(owner, name)

report = qa.build_index(
    Path(sys.argv[1]),
    Path(sys.argv[2]),
    embedder=FakeEmbedder(),
    settings=qa.Settings(min_score=0.3, parse_timeout=30),
)
print(f"completed {count} {report.generation}")
