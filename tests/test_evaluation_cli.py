"""`qa eval` metrics on tiny SQuAD/BEIR files, and the CLI's error handling (fake embedder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qa import evaluation
from qa.cli import main
from qa.settings import Settings
from tests.conftest import FakeEmbedder

PARAS = [
    (
        "Zebras live on the African savanna. Their stripes confuse biting flies.",
        "What confuses biting flies?",
        "stripes",
    ),
    (
        "Penguins breed in Antarctica. Emperor penguins huddle to stay warm in winter.",
        "How do emperor penguins stay warm?",
        "huddle",
    ),
    (
        "The Rhine flows from the Swiss Alps to the North Sea through Germany.",
        "Where does the Rhine end?",
        "North Sea",
    ),
]


def squad_file(tmp_path: Path, v2: bool) -> Path:
    paragraphs = []
    for i, (ctx, q, a) in enumerate(PARAS):
        qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": ctx.index(a)}]}]
        if v2:
            qas.append(
                {
                    "id": f"u{i}",
                    "question": "What is the price of tea in Ulaanbaatar markets?",
                    "answers": [],
                    "is_impossible": True,
                }
            )
        paragraphs.append({"context": ctx, "qas": qas})
    path = tmp_path / "squad.json"
    path.write_text(
        json.dumps({"version": "2.0" if v2 else "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]})
    )
    return path


@pytest.mark.parametrize("v2", [False, True])
def test_eval_squad_metrics(tmp_path: Path, fake: FakeEmbedder, v2: bool) -> None:
    docs, questions = evaluation.load_squad(squad_file(tmp_path, v2))
    assert len(docs) == 3 and len(questions) == (6 if v2 else 3)
    settings = Settings(min_score=0.3)
    index = evaluation.prepare_index(docs, tmp_path / "work", settings, fake)
    result = evaluation.eval_squad(questions, index)
    assert result["quote_fidelity"] == 1.0
    assert result["passage_recall"]["@1"] == 1.0 and result["mrr@20"] == 1.0
    assert result["answer_sentence_accuracy"]["@1"] == 1.0
    if v2:
        assert result["refused_unanswerable"] == 1.0
    else:
        assert "refused_unanswerable" not in result
    # a re-run reuses the built index: nothing is embedded again
    fake.encoded.clear()
    evaluation.prepare_index(docs, tmp_path / "work", settings, fake)
    assert fake.encoded == []


def test_eval_beir_metrics(tmp_path: Path, fake: FakeEmbedder) -> None:
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for i, (ctx, _, _) in enumerate(PARAS):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": ctx}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for i, (_, q, _) in enumerate(PARAS):
            fh.write(json.dumps({"_id": f"q{i}", "text": q}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3))
    )
    docs, queries, qrels = evaluation.load_beir(folder)
    index = evaluation.prepare_index(docs, tmp_path / "work", Settings(), fake)
    result = evaluation.eval_beir(queries, qrels, index)
    assert result == {"queries": 3, "ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}


def test_bad_eval_inputs_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(evaluation.ConfigError, match=r"bad\.json"):
        evaluation.load_squad(bad)
    with pytest.raises(evaluation.ConfigError, match=r"corpus\.jsonl"):
        evaluation.load_beir(tmp_path)


# where the CLI gets its embedders: tests put the fake embedder in all of them
QUERY_AND_BUILD_FACTORIES = (
    "qa.embedding.get_embedder",
    "qa.embedding.get_query_embedder",
    "qa.building.get_embedder",
    "qa.index.get_query_embedder",
)


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", "--index", "{tmp}/missing", "hello?"], "error: no index at"),
        (["index", "--corpus", "{tmp}/nope", "--index", "{tmp}/idx"], "error: corpus folder"),
        (["info", "--index", "{tmp}/missing"], "error: no index at"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for target in QUERY_AND_BUILD_FACTORIES:
        monkeypatch.setattr(target, lambda *a, **k: FakeEmbedder())
    result = CliRunner().invoke(main, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "Traceback" not in result.output


def test_cli_index_ask_info(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEmbedder()
    for target in QUERY_AND_BUILD_FACTORIES:
        monkeypatch.setattr(target, lambda *a, **k: fake)
    runner = CliRunner()
    idx = str(tmp_path / "idx")
    out = runner.invoke(main, ["index", "--corpus", str(corpus), "--index", idx])
    assert out.exit_code == 0, out.output
    assert "1 added" in out.output and "embedded" in out.output
    out = runner.invoke(main, ["ask", "--index", idx, "--json", "--k", "2", "OpenAI Foxconn partnership"])
    data = json.loads(out.output)
    assert len(data["quotes"]) == 2 and "Foxconn" in data["quotes"][0]["text"]
    out = runner.invoke(main, ["info", "--index", idx])
    assert (
        out.exit_code == 0
        and "fake-bow-1024" in out.output
        and "openai-foxconn-ai-hardware.txt" in out.output
    )
    out = runner.invoke(main, ["ask", "--index", idx, "   "])
    assert out.exit_code == 1 and out.output.startswith("error: the question is empty")


def test_eval_rationales(tmp_path: Path, fake: FakeEmbedder) -> None:
    sentences = [
        ["Zebras live on the African savanna.", "Their stripes confuse biting flies."],
        ["Penguins breed in Antarctica.", "Emperor penguins huddle to stay warm."],
    ]
    docs = {f"d{i}": " ".join(s) for i, s in enumerate(sentences)}
    (tmp_path / "corpus_sentences.jsonl").write_text(
        "".join(json.dumps({"doc_id": f"d{i}", "abstract": s}) + "\n" for i, s in enumerate(sentences))
    )
    claims = [
        {
            "id": 1,
            "claim": "Stripes confuse biting flies.",
            "evidence": {"d0": [{"sentences": [1], "label": "S"}]},
        },
        {
            "id": 2,
            "claim": "Emperor penguins huddle to stay warm.",
            "evidence": {"d1": [{"sentences": [0], "label": "S"}]},
        },
        {"id": 3, "claim": "Nothing here.", "evidence": {}},
    ]
    (tmp_path / "claims_dev.jsonl").write_text("".join(json.dumps(c) + "\n" for c in claims))
    index = evaluation.prepare_index(docs, tmp_path / "work", Settings(), fake)
    result = evaluation.eval_rationales(
        tmp_path / "claims_dev.jsonl", tmp_path / "corpus_sentences.jsonl", index
    )
    # claim 1 highlights its rationale sentence; claim 2's rationale is listed as sentence 0 (not the
    # highlighted one), so it counts as a miss: 1 of 2.
    assert result == {"claims_with_evidence": 2, "gold_document_first": 2, "highlight_is_rationale": 0.5}


def test_eval_squad_cli_table_json_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEmbedder()
    for target in QUERY_AND_BUILD_FACTORIES:
        monkeypatch.setattr(target, lambda *a, **k: fake)
    monkeypatch.setenv("QA_MIN_SCORE", "0.3")
    args = ["eval", "squad", str(squad_file(tmp_path, False)), "--index-dir", str(tmp_path / "w")]
    out = CliRunner().invoke(
        main, [*args, "--plot", str(tmp_path / "r.png"), "--out", str(tmp_path / "r.json")]
    )
    assert out.exit_code == 0, out.output
    assert "passage_recall" in out.output and "recall_by_ranking bm25" in out.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["recall_by_ranking"]) == {"dense", "bm25", "fused", "qa"}
    assert data["recall_by_ranking"]["qa"]["@1"] == data["passage_recall"]["@1"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
