"""The numpy query encoder against sentence-transformers, with the real all-MiniLM-L6-v2.

- Vectors: within 1e-5 cosine distance (and the same token ids) on 359 SQuAD questions plus
  86 made ones: one character, long, non-Latin scripts, emoji, accents, control
  characters, and texts at, just over and far over the 256-token limit (truncated).
- Answers: identical documents, offsets, highlights and found/not-found on those 359 SQuAD
  questions (tests/data: SQuAD v1.1 dev, articles Warsaw and Normans, 94 paragraphs) and on
  the default corpus's questions, with sentence-transformers or numpy embedding the question.
- Fallback: a model folder it does not implement is encoded by sentence-transformers and
  ``qa info`` says why; QA_QUERY_ENCODER=numpy refuses it with a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qa
from qa import evaluation
from qa.embedding import SentenceTransformerEmbedder, default_model_path, get_embedder, get_query_embedder
from qa.query_embedding import NumpyEmbedder

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parent.parent
SQUAD = Path(__file__).parent / "data" / "squad-v1.1-dev-2articles.json"
CORPUS_QUESTIONS = [
    "Who is OpenAI partnering with to manufacture AI hardware?",
    "What kinds of devices will the collaboration produce?",
    "Why is Foxconn interested in AI servers?",
    "What is the capital of Australia?",
    "What is the boiling point of liquid nitrogen in Kelvin?",
    "robotics",
    "Où seront fabriqués les appareils ?",
]


def made_questions() -> list[str]:
    """Edge cases around what a tokenizer and a fixed-length model can trip on."""
    words = ["the", "committee", "approved", "a", "budget", "for", "supercalifragilistic", "infrastructure"]
    out = ["a", "?", "AI", "x" * 300, "Zürich", "naïve café résumé?", "ÅNGSTRÖM UPPERCASE", "é" * 50]
    out += [
        "Что такое квантовая механика?",
        "量子力学とは何ですか？",
        "什么是人工智能？",
        "ما هي الطاقة الشمسية؟",
        "क्या भारत की राजधानी दिल्ली है?",
        "양자 컴퓨터는 무엇인가요?",
        "Τι είναι η φωτοσύνθεση;",
        "שלום, מה שלומך?",
        "ภาษาไทยคืออะไร",
        "Ποιος; 誰? кто? who?",
    ]
    out += ["Who made 🤖 robots? 🚀🚀", "🙂", "👩‍👩‍👧‍👦 family emoji", "flags 🇫🇷🇯🇵 and skin 👍🏽", "🤗" * 40]
    out += [
        "tabs\tand\nnewlines\r\nin a question",
        "zero\u200bwidth space",
        "control \x07 bell \x1b esc",
        "combining e\u0301 and a\u0308",
        "   leading and trailing spaces   ",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
        "<script>alert(1)</script> & entities &amp;",
        "C++ / C# / F# — “quotes” ‘single’ … ellipsis",
        "3.14159 × 10^-5 ≈ 0.0000314",
        "e-mail: someone@example.com, https://example.org/a?b=c",
    ]
    for n in (50, 120, 200, 253, 254, 255, 256, 257, 300, 600, 2000):  # words ~ tokens: around the limit
        out.append(" ".join(words[i % len(words)] for i in range(n)))
    out.append(" ".join(["日本語の長い文章"] * 200))
    out.append(" ".join(["emoji 🎉 party"] * 150))
    for i in range(40):  # mixed lengths and scripts
        out.append(" ".join([words[(i + k) % len(words)] for k in range(i + 1)] + ["Привет", "🌍", str(i)]))
    return out


@pytest.fixture(scope="module")
def squad() -> tuple[dict[str, str], list[evaluation.SquadQuestion]]:
    return evaluation.load_squad(SQUAD)


@pytest.fixture(scope="module")
def encoders() -> tuple[NumpyEmbedder, SentenceTransformerEmbedder]:
    return NumpyEmbedder(default_model_path()), get_embedder(threads=1)


def test_vectors_match_sentence_transformers(
    encoders: tuple[NumpyEmbedder, SentenceTransformerEmbedder], squad: tuple[dict[str, str], list]
) -> None:
    fast, st = encoders
    texts = [q.question for q in squad[1]] + made_questions()
    assert len(texts) == 359 + 86
    a, b = fast.encode(texts), st.encode(texts)
    assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
    distance = 1.0 - (a * b).sum(axis=1)
    worst = int(distance.argmax())
    assert distance.max() <= 1e-5, (texts[worst][:80], float(distance[worst]))
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # the same tokens, truncated at the same place
    hf = st._load().tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    fast.load()
    mine = [e.ids for e in fast._tokenizer.encode_batch(texts)]
    assert mine == hf
    assert max(len(ids) for ids in mine) == 256 and fast.max_tokens == st.max_tokens == 254
    assert fast.fingerprint == st.fingerprint


def test_chunk_and_sentence_vectors_match(
    encoders: tuple[NumpyEmbedder, SentenceTransformerEmbedder],
) -> None:
    fast, st = encoders
    text = (ROOT / "corpus" / "openai-foxconn-ai-hardware.txt").read_text(encoding="utf-8")
    chunks = [text[i : i + 900] for i in range(0, 4500, 900)]
    units = [[(0, 300), (300, 650), (650, len(c))] for c in chunks]
    (ca, ua), (cb, ub) = fast.encode_chunks(chunks, units), st.encode_chunks(chunks, units)
    assert (1 - (ca * cb).sum(axis=1)).max() <= 1e-5
    # unit vectors are float16 (as stored): compare their directions in float32
    unit = [(x.astype(np.float32), y.astype(np.float32)) for x, y in zip(ua, ub, strict=True)]
    assert all(x.dtype == y.dtype == np.float16 for x, y in zip(ua, ub, strict=True))
    assert all(
        (1 - (x * y).sum(axis=1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).max() <= 1e-5
        for x, y in unit
    )
    assert np.array_equal(fast.token_starts(text), st.token_starts(text))


def _answer_key(answer: qa.Answer) -> tuple[object, ...]:
    return (
        answer.found,
        answer.answer,
        [(q.doc, q.start, q.end, q.highlight, q.text, q.location) for q in answer.quotes],
    )


def _compare(index_dir: Path, questions: list[str]) -> None:
    fast = qa.Index.load(index_dir, qa.Settings())
    torch_ = qa.Index.load(index_dir, qa.Settings(query_encoder="sentence-transformers"))
    assert isinstance(fast.embedder, NumpyEmbedder)
    assert isinstance(torch_.embedder, SentenceTransformerEmbedder)
    differ = []
    for question in questions:
        a, b = fast.ask(question), torch_.ask(question)
        if _answer_key(a) != _answer_key(b):
            differ.append(question)
        assert np.allclose([q.score for q in a.quotes], [q.score for q in b.quotes], atol=1e-4)
    assert differ == []


def test_same_answers_on_squad_questions(
    tmp_path_factory: pytest.TempPathFactory, squad: tuple[dict[str, str], list]
) -> None:
    docs, questions = squad
    work = tmp_path_factory.mktemp("squad")
    evaluation.prepare_index(docs, work, qa.Settings(), None)
    assert len(questions) == 359
    _compare(work / "index", [q.question for q in questions])


def test_same_answers_on_the_default_corpus(tmp_path: Path) -> None:
    qa.build_index(ROOT / "corpus", tmp_path / "index")
    _compare(tmp_path / "index", CORPUS_QUESTIONS)


def _unsupported_copy(tmp_path: Path) -> Path:
    """The real model with ``hidden_act`` changed to one the numpy encoder lacks (torch runs it)."""
    src, dst = default_model_path(), tmp_path / "model"
    dst.mkdir()
    for item in src.iterdir():
        (dst / item.name).symlink_to(item)
    (dst / "config.json").unlink()
    config = json.loads((src / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_new"}))
    return dst


def test_unsupported_model_falls_back_with_a_note(tmp_path: Path) -> None:
    model = _unsupported_copy(tmp_path)
    settings = qa.Settings(model=model, corpus=ROOT / "corpus", index=tmp_path / "index")
    embedder = get_query_embedder(settings)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert "hidden_act 'gelu_new'" in embedder.note
    qa.build_index(settings=settings)
    assert qa.Index.load(settings=settings).ask(CORPUS_QUESTIONS[0]).found
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "qa.cli", "info", "--index", str(tmp_path / "index"), "--model", str(model)]
    info = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert "questions   encoded with sentence-transformers" in info.stdout
    assert "does not implement this model" in info.stdout and "gelu_new" in info.stdout
    ask = [
        sys.executable,
        "-m",
        "qa.cli",
        "ask",
        "--index",
        str(tmp_path / "index"),
        "--model",
        str(model),
        "x",
    ]
    refused = subprocess.run(ask, capture_output=True, text=True, env={**env, "QA_QUERY_ENCODER": "numpy"})
    assert refused.returncode == 1 and refused.stderr.startswith("error: ") and "gelu_new" in refused.stderr
