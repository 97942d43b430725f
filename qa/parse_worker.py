"""The isolated worker: ``python -P -m qa.parse_worker --memory-bytes N`` (started by
``qa.isolation.IsolatedWorker``, not by people).

It caps its own address space (``RLIMIT_AS``), imports the parsers, says "ready", then
answers framed requests on stdin/stdout until stdin ends (see ``qa.isolation`` for the
frame format). Requests:

- ``{"op": "parse", "fmt": F}`` + [file bytes] -> ``{"status": "ok", "locations", "note"}``
  + [text as UTF-8], or ``{"status": "error", "reason", "fatal"}`` (fatal: the worker ran
  out of memory and exits after this reply);
- ``{"op": "page", "page": P, "max_px": M}`` + [PDF bytes] -> ``{"status": "ok", "pages",
  "width", "height", "image_width", "image_height"}`` + [PNG, pdfium's page text as UTF-8,
  its character boxes as float32 (left, bottom, right, top) in PDF points] (``qa.pageview``).

Whatever a parser prints goes to stderr, and after start-up stderr goes to /dev/null: the
protocol owns stdout, and tracebacks of a parser dying of MemoryError would only clutter the
build's terminal (start-up errors stay visible).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import IO, Any

from qa.isolation import encode_frame, read_frame


def _one_malloc_arena() -> None:
    """Limit glibc malloc to its main arena (mallopt M_ARENA_MAX = 1).

    At the address-space limit, glibc otherwise answers every failed allocation by trying
    to map a fresh 64-128 MiB arena, which fails too: the worker crawls for minutes instead
    of failing with MemoryError. Does nothing where glibc is absent.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _parse(header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    from qa.errors import DocumentError
    from qa.parsing import _short, parse

    try:
        text, locations, note = parse(str(header["fmt"]), blobs[0])
    except DocumentError as exc:
        # A worker that hit its memory cap may be left unable to allocate: it answers, then
        # exits ("fatal"), and the next file gets a fresh one.
        fatal = isinstance(exc.__cause__, MemoryError)
        return {"status": "error", "reason": str(exc), "fatal": fatal}, []
    except BaseException as exc:  # never let the worker die silently on one file
        reason = f"parser failed ({type(exc).__name__}: {_short(exc)})"
        return {"status": "error", "reason": reason, "fatal": isinstance(exc, MemoryError)}, []
    return {"status": "ok", "locations": locations, "note": note}, [text.encode("utf-8", "surrogatepass")]


def _page(header: dict[str, Any], blobs: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    from qa.parsing import _short

    try:
        from qa.pageview import render_page

        return render_page(blobs[0], int(header["page"]), int(header["max_px"]))
    except BaseException as exc:  # a broken page is a message for the source view, not a crash
        return {"status": "error", "reason": f"{type(exc).__name__}: {_short(exc)}"}, []


_OPS = {"parse": _parse, "page": _page}


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer requests from ``inp`` on ``out`` until ``inp`` ends."""
    out.write(encode_frame({"status": "ready"}))
    out.flush()
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        header, blobs = frame
        op = _OPS.get(str(header.get("op")))
        if op is None:
            reply: tuple[dict[str, Any], list[bytes]] = ({"status": "error", "reason": "unknown request"}, [])
        else:
            reply = op(header, blobs)
        out.write(encode_frame(*reply))
        out.flush()
        if reply[0].get("fatal"):
            return


def main(argv: list[str] | None = None) -> None:
    """Set the limits, import the parsers, then serve requests on stdin/stdout."""
    import resource

    args = argparse.ArgumentParser(prog="python -m qa.parse_worker")
    args.add_argument("--memory-bytes", type=int, required=True)
    memory = args.parse_args(argv).memory_bytes
    # The parent decides when this process ends; Ctrl+C in a terminal reaches it there.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so a parser that
    # prints cannot corrupt a frame.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    _one_malloc_arena()
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # warnings on malformed files are noise
    # Import before saying "ready" so import time never counts against a file's time limit.
    import bs4  # noqa: F401
    import docx  # noqa: F401
    import markdown_it  # noqa: F401
    import pypdf  # noqa: F401

    import qa.parsing  # noqa: F401

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.dup2(devnull, 1)
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
