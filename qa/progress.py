"""Build progress for people: stage, counts, percentage and an estimate of the time left.

``build_index`` reports ``progress(stage, done, total)`` with the stages "loading model",
"parsing" (files), "embedding" (chunks, once per model batch) and "writing". This module turns
those calls into words: ``ProgressTracker`` keeps the rate of the current stage and the time
left; ``cli_progress`` draws them on a terminal (tqdm on stderr), as plain periodic lines when
stderr is not a terminal (CI logs, ``nohup``), or not at all (``--quiet``).

Example: embedding reports 64 of 155 chunks 8 s after the stage started, so 8 chunks/s and
(155 - 64) / 8 = 11 s left: "embedding 64/155 chunks (41%), about 11 s left".
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

UNITS = {"loading model": "", "parsing": "files", "embedding": "chunks", "writing": "steps"}
Progress = Callable[[str, int, int], None]
_WORDS = {"": "starting", "loading model": "loading the embedding model", "writing": "writing the index"}


def human_seconds(seconds: float) -> str:
    """``7 s``, ``2 min 05 s``, ``1 h 03 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ProgressTracker:
    """The state of a build as reported through ``progress(stage, done, total)`` calls."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stage = ""
        self.done = 0
        self.total = 0
        self._stage_start = 0.0
        self._first: tuple[float, int] | None = None  # (time, done) of the stage's first progress

    def update(self, stage: str, done: int, total: int) -> None:
        """Record a progress call."""
        now = self.clock()
        if stage != self.stage:
            self.stage, self._stage_start, self._first = stage, now, None
        if self._first is None and done > 0:
            self._first = (now, done)
        self.done, self.total = done, total

    def fraction(self) -> float:
        """Share of the current stage that is done, 0..1."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left in the current stage, or None before there is a rate to go by.

        The rate counts from the stage's start: the first embedding batch includes the
        model's warm-up, which makes early estimates pessimistic rather than hopeful.
        """
        if self.total <= 0 or self.done <= 0 or self.done >= self.total or self._first is None:
            return None
        elapsed = self.clock() - self._stage_start
        if elapsed <= 0:
            return None
        return (self.total - self.done) / (self.done / elapsed)

    @staticmethod
    def describe_stage(stage: str) -> str:
        """Words for a stage without counts ("loading the embedding model")."""
        return _WORDS.get(stage, stage)

    def describe(self, percent: bool = True) -> str:
        """One line, e.g. "embedding 64/155 chunks (41%), about 11 s left" (``percent=False``
        leaves the percentage out, for a bar that shows its own)."""
        if self.stage in _WORDS:
            return _WORDS[self.stage]
        unit = UNITS.get(self.stage, "")
        text = f"{self.stage} {self.done}/{self.total} {unit}".rstrip()
        if self.total and percent:
            text += f" ({self.fraction():.0%})"
        eta = self.eta()
        if eta is not None and eta >= 1:
            text += f", about {human_seconds(eta)} left"
        elif self.stage == "embedding" and 0 == self.done < self.total:
            text += ", estimating the time left"
        return text


def cli_progress(stream: IO[str] | None = None, quiet: bool = False, interval: float = 2.0) -> Progress:
    """A ``progress`` callback for the command line.

    Args:
        stream: where to write (default ``sys.stderr``).
        quiet: report nothing.
        interval: seconds between plain lines of one stage when ``stream`` is not a terminal
            (the first and last line of each stage are always written).

    Returns:
        A function to pass as ``build_index(progress=...)``.
    """
    out = stream or sys.stderr
    if quiet:
        return lambda stage, done, total: None
    if out.isatty() and _columns(out) > 0:  # a pty without a size would draw empty bars
        return _TerminalBars(out)
    return _PlainLines(out, interval)


def _columns(out: IO[str]) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a real terminal (tests): assume a width
        return 80


class _PlainLines:
    """Periodic lines for logs: "embedding 64/155 chunks (41%), about 11 s left"."""

    def __init__(self, out: IO[str], interval: float) -> None:
        self.out = out
        self.interval = interval
        self.tracker = ProgressTracker()
        self._last = (-1.0, "", "")  # (time, stage, text) of the last line written

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.tracker.update(stage, done, total)
        now = self.tracker.clock()
        new_stage = stage != self._last[1]
        if new_stage or done >= total or now - self._last[0] >= self.interval:
            text = self.tracker.describe()
            if text != self._last[2]:  # "writing the index" at its start and its end: once
                self.out.write(text + "\n")
                self.out.flush()
            self._last = (now, stage, text)


class _TerminalBars:
    """One live tqdm bar per stage (counts, rate and time left), replaced at each stage."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.stage = ""
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            if stage in ("loading model", "writing"):  # no counts worth a bar: say what happens
                self.out.write(ProgressTracker().describe_stage(stage) + "…\n")
                self.out.flush()
                return
            unit = UNITS.get(stage, "")
            if total <= 0:  # e.g. nothing new to embed: one line, no empty bar
                self.out.write(f"{stage}: 0 {unit}".rstrip() + "\n")
                self.out.flush()
                return
            self.bar = tqdm(
                total=total,
                desc=stage,
                unit=f" {unit}" if unit else "it",
                file=self.out,
                dynamic_ncols=True,
                leave=True,
            )
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
