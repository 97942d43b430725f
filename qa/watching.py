"""Watching: keep the index in step with a live corpus folder (``qa serve --watch``,
``qa index --watch``).

A ``Watcher`` runs two threads. One listens to the file system (watchfiles: inotify on Linux)
and queues every change to a non-hidden path of the corpus. The other waits until changes
settle (no new change for ``settle`` seconds, or ``max_wait`` after the first one) and runs
the incremental rebuild it was given; the live generation keeps answering until the swap.

Why this ends in a correct index: changes are queued while a rebuild runs, so anything
written after the rebuild read a file triggers one more rebuild once it settles. An editor's
"write a temp file, rename it over" is one settled burst; hundreds of files copied at once are
one rebuild (or a few, ``max_wait`` apart); a file still being written when the build reads
it is reported ("the file grew...") and indexed by the rebuild that follows its last write.
A burst that leaves nothing changed (a temp file created and deleted) is not rebuilt: the
corpus's signature (names, sizes, modification times) is compared with the one seen when the
last rebuild started. A rebuild refused because another process holds the build lock is
retried after ``retry`` seconds.

Non-goals: watching several folders, network file systems without inotify (watchfiles falls
back to polling only when told to).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.errors import BuildLockedError, CorpusError, QAError

if TYPE_CHECKING:
    from qa.building import BuildReport, Mapper
    from qa.service import QAService
    from qa.settings import Settings

log = logging.getLogger(__name__)

Signature = frozenset[tuple[str, int, int]]
CATCH_UP = "(changes made while nothing was watching)"


def corpus_signature(corpus: Path) -> Signature:
    """(relative path, size, mtime in ns) of every non-hidden file under ``corpus``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(corpus, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone since it was listed: the next event says so
            found.append((os.path.relpath(path, corpus), st.st_size, st.st_mtime_ns))
    return frozenset(found)


@dataclass(frozen=True)
class WatchStatus:
    """What the watcher is doing and what the last rebuild changed."""

    corpus: str
    watching: bool = False
    state: str = "starting"  # starting | idle | settling | rebuilding | waiting (build lock) | stopped
    changed_paths: tuple[str, ...] = ()  # paths seen changing (settling or rebuilding)
    updated: float = 0.0  # when the last rebuild finished (epoch seconds), 0 = not yet
    generation: str = ""
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    error: str = ""
    rebuilds: int = 0  # rebuilds that finished
    bursts: int = 0  # settled bursts of changes handled (rebuilt, skipped as no-ops, or failed)

    def what_changed(self) -> str:
        """ "2 added (a.txt, b.md); 1 removed (c.pdf)", or "nothing changed"."""
        parts = []
        for label, ids in (
            ("added", self.added),
            ("changed", self.changed),
            ("removed", self.removed),
            ("failed", self.failed),
        ):
            if ids:
                names = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
                parts.append(f"{len(ids)} {label} ({names})")
        return "; ".join(parts) or "no document changed"

    def describe(self, building: str = "") -> str:
        """One line for the page: what the watcher does, when the index last changed and how.

        ``building`` is the rebuild's progress ("embedding 40/155 chunks") while one runs.
        """
        if self.error and self.state in ("stopped", "waiting"):
            return f"Watching {self.corpus}: {self.error}"
        if self.state == "settling":
            n = len(self.changed_paths)
            paths = f"{n} path{'s' if n != 1 else ''}"
            return f"Changes seen in {self.corpus} ({paths}): updating the index when they settle…"
        if self.state == "rebuilding":
            return (
                f"Updating the index in the background{': ' + building if building else ''}; "
                "answers come from the current index until the new one is ready."
            )
        line = f"Watching {self.corpus} for changes"
        if self.updated:
            when = time.strftime("%H:%M:%S", time.localtime(self.updated))
            line += f" · index last updated {when}" + (f" ({self.generation})" if self.generation else "")
            line += f": {self.what_changed()}"
        if self.error:
            line += f" · last update failed: {self.error}"
        return line + "."


@dataclass
class _Shared:
    status: WatchStatus
    lock: threading.Lock = field(default_factory=threading.Lock)


class Watcher:
    """Watch ``corpus`` and call ``rebuild()`` after changes settle.

    ``rebuild`` returns the ``BuildReport`` (or an object with its ``generation``, ``added``,
    ``changed``, ``removed`` and ``failed`` fields) and raises ``BuildLockedError`` when
    another build holds the lock (retried) or another ``QAError`` (reported; the next change
    tries again). ``on_update(status)`` is called after each rebuild, e.g. to print it.
    """

    def __init__(
        self,
        corpus: Path,
        rebuild: Callable[[], Any],
        *,
        settle: float = 1.0,
        max_wait: float = 30.0,
        retry: float = 5.0,
        ignore: Iterable[Path] = (),
        catch_up: bool = True,
        on_update: Callable[[WatchStatus], None] | None = None,
    ) -> None:
        self.corpus = Path(corpus)
        self.rebuild = rebuild
        self.settle = settle
        self.max_wait = max_wait
        self.retry = retry
        self.on_update = on_update
        self.catch_up = catch_up
        self._root = self.corpus.resolve()
        self._ignore = [Path(p).resolve() for p in ignore]
        self._changes: queue.Queue[set[str]] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._shared = _Shared(WatchStatus(corpus=str(corpus)))
        self._last_signature: Signature | None = None

    # -- public ------------------------------------------------------------------------------

    def status(self) -> WatchStatus:
        """A snapshot of what the watcher is doing."""
        with self._shared.lock:
            return self._shared.status

    def start(self) -> Watcher:
        """Start watching (returns at once; threads are daemons).

        Raises:
            CorpusError: the corpus folder does not exist.
        """
        if not self.corpus.is_dir():
            raise CorpusError(f"corpus folder {self.corpus} does not exist: create it or pass --corpus DIR")
        ready = threading.Event()
        listen = threading.Thread(target=self._listen, args=(ready,), name="qa-watch-listen", daemon=True)
        work = threading.Thread(target=self._work, name="qa-watch-rebuild", daemon=True)
        self._threads = [listen, work]
        listen.start()
        ready.wait(10)  # inotify watches are in place before anything is written after this
        if self.catch_up:
            self._changes.put({CATCH_UP})
        work.start()
        self._set(watching=True, state="idle")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (a rebuild under way finishes first, up to ``timeout``)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._set(watching=False, state="stopped")

    def mark_built(self, signature: Signature) -> None:
        """Say the corpus was indexed as it was when ``signature`` was taken (before that build
        started): a burst that leaves it so is not rebuilt again."""
        self._last_signature = signature

    # -- threads -----------------------------------------------------------------------------

    def _keep(self, change: Any, path: str) -> bool:
        """Changes to non-hidden paths of the corpus, outside any ignored folder (an index
        kept inside the corpus would otherwise trigger a rebuild after each rebuild)."""
        p = Path(path)  # watchfiles reports paths under the folder it watches: self._root
        if not p.is_relative_to(self._root) or any(
            part.startswith(".") for part in p.relative_to(self._root).parts
        ):
            return False
        return not any(p.is_relative_to(ig) for ig in self._ignore)

    def _listen(self, ready: threading.Event) -> None:
        import watchfiles

        try:
            watcher = watchfiles.watch(
                self._root,
                watch_filter=self._keep,
                debounce=200,
                step=50,
                stop_event=self._stop,
                yield_on_timeout=True,
                rust_timeout=500,
                raise_interrupt=False,
            )
            for changes in watcher:
                ready.set()
                if changes:
                    self._changes.put({os.path.relpath(path, self._root) for _, path in changes})
        except Exception as exc:  # the folder vanished, inotify limits...: say so on the page
            log.exception("watching %s stopped", self.corpus)
            self._set(watching=False, state="stopped", error=f"watching stopped: {exc}")
        finally:
            ready.set()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                seen = self._changes.get(timeout=0.2)
            except queue.Empty:
                continue
            seen = self._settle(seen)
            if self._stop.is_set():
                return
            self._rebuild(seen)

    def _settle(self, seen: set[str]) -> set[str]:
        """Collect changes until none came for ``settle`` s (at most ``max_wait`` s)."""
        first = time.monotonic()
        self._set(state="settling", changed_paths=tuple(sorted(seen)))
        while not self._stop.is_set():
            left = min(self.settle, first + self.max_wait - time.monotonic())
            if left <= 0:
                break
            try:
                seen |= self._changes.get(timeout=left)
            except queue.Empty:
                break
            self._set(changed_paths=tuple(sorted(seen)))
        return seen

    def _rebuild(self, seen: set[str]) -> None:
        while not self._stop.is_set():
            signature = corpus_signature(self.corpus) if self.corpus.is_dir() else frozenset()
            if signature == self._last_signature and CATCH_UP not in seen:
                # e.g. a temp file came and went
                self._set(state="idle", changed_paths=(), bursts=self.status().bursts + 1)
                return
            self._set(state="rebuilding", changed_paths=tuple(sorted(seen - {CATCH_UP})))
            try:
                report = self.rebuild()
            except BuildLockedError as exc:  # `qa index` elsewhere: try again in a while
                self._set(state="waiting", error=f"{exc}; retrying in {self.retry:g} s")
                if self._stop.wait(self.retry):
                    return
                continue
            except QAError as exc:
                self._set(state="idle", error=str(exc), changed_paths=(), bursts=self.status().bursts + 1)
                self._notify()
                return
            except Exception as exc:  # never let the thread die silently
                log.exception("rebuild after changes failed")
                error = f"rebuild failed ({type(exc).__name__}: {exc})"
                self._set(state="idle", error=error, changed_paths=(), bursts=self.status().bursts + 1)
                self._notify()
                return
            self._last_signature = signature
            self._set(
                state="idle",
                changed_paths=(),
                error="",
                updated=time.time(),
                generation=str(getattr(report, "generation", "")),
                added=tuple(report.added),
                changed=tuple(report.changed),
                removed=tuple(report.removed),
                # skipped files the burst touched (e.g. one still being written), not every
                # unsupported file of the corpus again
                failed=tuple(s.id for s in report.failed if s.id in seen),
                rebuilds=self.status().rebuilds + 1,
                bursts=self.status().bursts + 1,
            )
            self._notify()
            return

    def _set(self, **changes: Any) -> None:
        with self._shared.lock:
            self._shared.status = replace(self._shared.status, **changes)

    def _notify(self) -> None:
        if self.on_update is not None:
            try:
                self.on_update(self.status())
            except Exception:  # a printing callback must not stop the watcher
                log.exception("watch callback failed")


def watch_index(
    settings: Settings,
    *,
    full: bool,
    progress: Callable[[str, int, int], None],
    emit: Callable[[BuildReport], None],
    say: Callable[[str], None],
    stop: threading.Event | None = None,
    mapper: Mapper | None = None,
) -> None:
    """``qa index --watch``: build, then rebuild after each settled burst of changes, until
    Ctrl+C (or ``stop`` is set). Changes made during the first build are not missed: the
    watcher listens before it starts.

    Raises:
        CorpusError: the corpus folder does not exist.
    """
    from qa.building import build_index

    stop = stop or threading.Event()

    def rebuild() -> BuildReport:
        report = build_index(settings, progress=progress, mapper=mapper)
        emit(report)
        return report

    def update(status: WatchStatus) -> None:
        if status.error:
            say(f"error: {status.error}")

    watcher = Watcher(
        settings.corpus,
        rebuild,
        settle=settings.watch_settle,
        ignore=[settings.index],
        catch_up=False,
        on_update=update,
    ).start()
    try:
        before = corpus_signature(settings.corpus)
        emit(build_index(settings, full=full, progress=progress))
        watcher.mark_built(before)
        say(f"watching {settings.corpus} for changes (Ctrl+C stops)")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        say("stopped watching")
    finally:
        watcher.stop()


def watch_service(service: QAService, settle: float | None = None) -> Watcher:
    """A (not yet started) watcher that rebuilds through ``service`` (the web app's): one
    rebuild at a time with the page's "Rebuild index", the chat answering from the live
    generation until the swap."""

    def rebuild() -> BuildReport:
        while service.start_rebuild() is None:  # one from the page is running: then ours
            service.wait_build()
        status = service.wait_build()
        if status.locked:
            raise BuildLockedError(status.error)
        if status.error or status.report is None:
            raise QAError(status.error or "the rebuild did not finish")
        return status.report

    settings = service.settings
    return Watcher(
        settings.corpus,
        rebuild,
        settle=settings.watch_settle if settle is None else settle,
        ignore=[settings.index],
    )
