"""Load: 16 concurrent API clients while rebuilds swap generations (fake embedder, 127.0.0.1).

The app (``build_ui`` over a ``QAService``, launched with ``launch`` on a free loopback port)
serves a temp copy of the default corpus plus generated reports, so each rebuild writes a
real generation (~0.2 s here). 16 ``gradio_client`` clients in threads ask ``QUESTIONS_EACH``
questions each through ``/ask`` while a driver thread alternately adds and removes a document
and rebuilds through ``QAService.start_rebuild()``. Questions 3-4 of each client wait for the
first swap and question 5 for the second, so at least two swaps happen during the load.

Checks: no failed request; every answer is consistent with the one generation it names (each
quote's document is in that generation and the quote is verbatim its text at start:end);
more than one generation answered; answers overlapped rebuilds; the queue never ran more than
``DEFAULT_CONCURRENCY`` questions at once. Prints p50/p95 latency. The real-model version is
``benchmarks/load.py``.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

import qa
from qa import store
from qa.answering import Answer
from qa.app import DEFAULT_CONCURRENCY, build_ui, launch
from qa.service import QAService
from tests.conftest import DEFAULT_CORPUS, FakeEmbedder
from tests.helpers.load_scenario import QUESTIONS, TOGGLED, ZEBRA_Q, toggle_document, write_reports
from tests.helpers.serving import free_port

CLIENTS = 16
QUESTIONS_EACH = 5
MAX_REBUILDS = 12  # keep_generations below is larger, so every answering generation stays on disk
REPORTS = 40


@dataclass
class CountingService(QAService):
    """A QAService that records how many questions run at once."""

    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    inflight: int = field(default=0, init=False)
    max_inflight: int = field(default=0, init=False)

    def ask(
        self, question: str, k: int | None = None, history: Sequence[tuple[str, Answer]] | None = None
    ) -> Answer:
        with self._count_lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return super().ask(question, k, history)
        finally:
            with self._count_lock:
                self.inflight -= 1


def percentile(values: list[float], p: float) -> float:
    data = sorted(values)
    return data[max(0, min(len(data) - 1, round(p / 100 * len(data) + 0.5) - 1))]


@pytest.mark.timeout(300)
def test_concurrent_clients_during_generation_swaps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS, corpus)
    write_reports(corpus, REPORTS)
    settings = qa.Settings(
        corpus=corpus, index=tmp_path / "index", min_score=0.3, parse_timeout=30, keep_generations=20
    )
    qa.build_index(settings=settings, embedder=FakeEmbedder())
    service = CountingService(settings, FakeEmbedder(), FakeEmbedder())
    app = build_ui(service)
    port = free_port()
    launch(app, settings, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"

    swaps = 0
    swapped = threading.Condition()
    stop = threading.Event()
    windows: list[tuple[float, float]] = []
    build_errors: list[str] = []
    results: list[tuple[int, str, float, float, dict[str, Any]]] = []
    failures: list[str] = []
    record = threading.Lock()

    def rebuilds() -> None:
        nonlocal swaps
        try:
            for n in range(MAX_REBUILDS):
                if stop.is_set():
                    break
                toggle_document(corpus, n)
                t0 = time.monotonic()
                if service.start_rebuild() is None:
                    build_errors.append("start_rebuild refused: a build is still running")
                    break
                status = service.wait_build(120)
                windows.append((t0, time.monotonic()))
                if status.running or status.error or status.report is None:
                    build_errors.append(f"rebuild {n}: {status.error or 'did not finish'}")
                    break
                with swapped:
                    swaps += 1
                    swapped.notify_all()
                stop.wait(0.15)
        finally:
            with swapped:
                swaps += 1000  # never leave a client waiting
                swapped.notify_all()

    def wait_swaps(n: int) -> None:
        with swapped:
            assert swapped.wait_for(lambda: swaps >= n, timeout=120), f"no swap {n}"

    def client_run(i: int, client: Client) -> None:
        for j in range(QUESTIONS_EACH):
            try:
                wait_swaps(0 if j < 2 else 1 if j < 4 else 2)
                q = QUESTIONS[(i + j) % len(QUESTIONS)]
                t0 = time.monotonic()
                res = client.predict(q, 3, api_name="/ask")
                t1 = time.monotonic()
                with record:
                    results.append((i, q, t0, t1, res))
            except Exception as exc:
                with record:
                    failures.append(f"client {i} question {j}: {type(exc).__name__}: {exc}")

    opened: dict[str, store.Generation] = {}
    try:
        clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
        driver = threading.Thread(target=rebuilds, name="rebuilds", daemon=True)
        threads = [
            threading.Thread(target=client_run, args=(i, c), name=f"client-{i}", daemon=True)
            for i, c in enumerate(clients)
        ]
        started = time.monotonic()
        driver.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(240)
        elapsed = time.monotonic() - started
        stop.set()
        driver.join(120)
        assert not driver.is_alive() and not any(t.is_alive() for t in threads), "load did not finish"

        assert failures == [], failures
        assert build_errors == [], build_errors
        assert len(results) == CLIENTS * QUESTIONS_EACH
        swaps_done = len(windows)
        assert swaps_done >= 2
        last_answer = max(t1 for _, _, _, t1, _ in results)
        assert sum(1 for _, end in windows if end < last_answer) >= 2, "fewer than 2 swaps during the load"

        # Every answer is consistent with the one generation it names.
        root = settings.index
        for _, q, _, _, res in results:
            name = res["generation"]
            if name not in opened:
                opened[name] = store.Generation(root / name, store.verify(root / name, None))
            gen = opened[name]
            docs = {d.id: d.row for d in gen.documents}
            for quote in res["quotes"]:
                assert quote["doc"] in docs, (name, quote["doc"])
                text = gen.document(docs[quote["doc"]]).text
                assert text[quote["start"] : quote["end"]] == quote["text"], (name, quote)
            if q == ZEBRA_Q and TOGGLED in docs:  # the added document answers at once
                assert any(quote["doc"] == TOGGLED for quote in res["quotes"]), (name, res)
        answered = {res["generation"] for *_, res in results}
        assert len(answered) > 1, answered
        with_doc = {n for n in answered if TOGGLED in {d.id for d in opened[n].documents}}
        assert with_doc and answered - with_doc, "answers came from one side of the swaps only"
        during = sum(1 for _, _, t0, t1, _ in results if any(t0 < e and s < t1 for s, e in windows))
        assert during > 0, "no question overlapped a rebuild"
        assert 2 <= service.max_inflight <= DEFAULT_CONCURRENCY, service.max_inflight

        lat = [t1 - t0 for _, _, t0, t1, _ in results]
        with capsys.disabled():
            print(
                f"\nload: {CLIENTS} clients x {QUESTIONS_EACH} questions = {len(lat)} requests in "
                f"{elapsed:.1f} s, 0 failed; latency p50 {percentile(lat, 50) * 1000:.0f} ms, "
                f"p95 {percentile(lat, 95) * 1000:.0f} ms, mean {statistics.fmean(lat) * 1000:.0f} ms; "
                f"{swaps_done} swaps, {len(answered)} generations answered, {during} answers "
                f"overlapped a rebuild, at most {service.max_inflight} questions at once"
            )
    finally:
        stop.set()
        app.close()
        for gen in opened.values():
            gen.close()
