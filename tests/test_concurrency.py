"""Questions from many threads while generations are rebuilt and swapped; hostile questions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import qa
from qa.errors import InvalidQuestionError
from tests.conftest import FakeEmbedder


def test_ask_during_rebuilds(settings: qa.Settings, fake: FakeEmbedder) -> None:
    qa.build_index(settings=settings, embedder=fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    docs_of: dict[str, set[str]] = {index.generation.name: {d.id for d in index.generation.documents}}
    errors: list[BaseException] = []
    answers: list[qa.Answer] = []
    stop = threading.Event()

    def asker() -> None:
        while not stop.is_set():
            try:
                answers.append(index.ask("Which animals does the extra document mention? OpenAI Foxconn"))
            except BaseException as exc:  # any exception fails the test
                errors.append(exc)
                return

    threads = [threading.Thread(target=asker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(8):
            extra = settings.corpus / "extra.txt"
            if i % 2 == 0:
                extra.write_text(f"Round {i}: the extra document mentions otters and beavers.")
            else:
                extra.unlink()
            report = qa.build_index(settings=settings, embedder=fake)
            index.reload()
            docs_of[report.generation] = {d.id for d in index.generation.documents}
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert len(answers) > 8
    for a in answers:
        assert a.generation in docs_of
        assert {q.doc for q in a.quotes} <= docs_of[a.generation]
    assert len({a.generation for a in answers}) > 1


@pytest.mark.parametrize(
    "question",
    [
        "\x00\x01\x1b[31m who partners with OpenAI?",
        "<script>alert(1)</script><img src=x onerror=alert(2)> Foxconn",
        "![x](http://example.com/x.png) [link](javascript:alert(1)) **Foxconn**",
        "谁是OpenAI的硬件制造合作伙伴？",
        "مع من تتعاون OpenAI؟",
        "🤖🏭 OpenAI hardware?",
        "x" * 1999,
    ],
)
def test_hostile_questions_answered_normally(
    settings: qa.Settings, fake: FakeEmbedder, question: str
) -> None:
    qa.build_index(settings=settings, embedder=fake)
    answer = qa.Index.load(settings.index, settings, embedder=fake).ask(question)
    assert isinstance(answer.found, bool)
    for q in answer.quotes:
        assert q.start <= q.highlight[0] < q.highlight[1] <= q.end


@pytest.mark.parametrize("question", ["", "   ", "\n\t", "x" * 100_000, " ".join(["word"] * 20_000)])
def test_unusable_questions_get_a_clear_error(
    settings: qa.Settings, fake: FakeEmbedder, question: str
) -> None:
    qa.build_index(settings=settings, embedder=fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    with pytest.raises(InvalidQuestionError, match="question"):
        index.ask(question)


def test_bad_k_refused(settings: qa.Settings, fake: FakeEmbedder, tmp_path: Path) -> None:
    qa.build_index(settings=settings, embedder=fake)
    index = qa.Index.load(settings.index, settings, embedder=fake)
    for k in (0, -1, 101):
        with pytest.raises(InvalidQuestionError, match="k must be"):
            index.ask("Foxconn", k=k)
