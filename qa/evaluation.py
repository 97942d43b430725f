"""Evaluation: measure qa on SQuAD-format and BEIR-format data with the real pipeline.

SQuAD: every paragraph becomes one document; each question is asked through ``Index.ask``.
  passage recall@k  = a quote among the top k lies inside the gold paragraph (same document);
  MRR               = mean of 1 / rank of the first such quote (0 if none in the top 20);
  answer-sentence accuracy@k = the highlighted sentence of one of the top-k quotes contains a
                      gold answer string;
  quote fidelity    = share of quotes with source_text[start:end] == text (must be 1.0);
  refusal rates     = (v2.0 files) share of unanswerable questions answered "not found", and
                      share of answerable ones wrongly refused.
BEIR: documents are ranked by their best quote; nDCG@10, recall@100 and MRR@10 on qrels/test.
SciFact rationales: for claims whose gold document is ranked first, the share whose highlighted
  sentence overlaps a gold rationale sentence.

The documents are written as files under ``work/corpus`` and indexed in ``work/index`` with the
normal incremental build, so a re-run on the same file reuses the index.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa import retrieval
from qa.answering import Answer
from qa.building import build_index
from qa.embedding import Embedder
from qa.errors import ConfigError
from qa.index import Index
from qa.settings import Settings

Progress = Callable[[str, int, int], None]
KS = (1, 3, 5, 10, 20)


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    doc: str
    answers: tuple[str, ...]
    impossible: bool


def load_squad(path: Path) -> tuple[dict[str, str], list[SquadQuestion]]:
    """Paragraphs (doc id -> text) and questions of a SQuAD v1.1 or v2.0 file.

    Raises:
        ConfigError: the file is missing or not in SQuAD layout.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        articles = data["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a SQuAD-format JSON file ({exc})") from exc
    docs: dict[str, str] = {}
    questions: list[SquadQuestion] = []
    for a, article in enumerate(articles):
        for p, para in enumerate(article["paragraphs"]):
            doc = f"a{a:03d}-p{p:03d}.txt"
            docs[doc] = para["context"]
            for qa_ in para["qas"]:
                answers = tuple(x["text"] for x in qa_.get("answers", []) if x["text"].strip())
                impossible = bool(qa_.get("is_impossible", False)) or not answers
                questions.append(SquadQuestion(str(qa_["id"]), qa_["question"], doc, answers, impossible))
    return docs, questions


def load_beir(
    folder: Path, split: str = "test"
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """BEIR corpus (doc id -> "title\\n\\ntext"), queries (id -> text) and qrels of ``split``.

    Raises:
        ConfigError: a BEIR file is missing or malformed.
    """
    try:
        docs = {}
        for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            title = (row.get("title") or "").strip()
            docs[str(row["_id"])] = f"{title}\n\n{row['text']}" if title else row["text"]
        queries = {}
        for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            queries[str(row["_id"])] = row["text"]
        qrels: dict[str, dict[str, int]] = {}
        for line in (folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            qid, did, score = line.split("\t")[:3]
            qrels.setdefault(qid, {})[did] = int(score)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{folder}: not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv): {exc}"
        ) from exc
    return docs, queries, qrels


def prepare_index(
    docs: dict[str, str],
    work: Path,
    settings: Settings,
    embedder: Embedder | None,
    progress: Progress | None = None,
) -> Index:
    """Write ``docs`` as files under ``work/corpus`` (only when changed) and build ``work/index``."""
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for doc, text in docs.items():
        name = doc if doc.endswith(".txt") else f"{doc}.txt"
        wanted.add(name)
        path = corpus / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stale in corpus.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    build_index(settings, corpus=corpus, index=work / "index", embedder=embedder, progress=progress)
    return Index.load(work / "index", settings, embedder=embedder)


def _fidelity(index: Index, answer: Answer, cache: dict[str, str]) -> tuple[int, int]:
    ok = 0
    for q in answer.quotes:
        if q.doc not in cache:
            cache[q.doc] = (index.root.parent / "corpus" / q.doc).read_text(encoding="utf-8")
        ok += cache[q.doc][q.start : q.end] == q.text
    return ok, len(answer.quotes)


def eval_squad(
    questions: Iterable[SquadQuestion], index: Index, progress: Progress | None = None
) -> dict[str, Any]:
    """Ask every question with 20 quotes and compute the SQuAD metrics above."""
    qs = list(questions)
    hits = {k: 0 for k in KS}
    sent = {k: 0 for k in KS}
    rr = 0.0
    faithful = total_quotes = 0
    refused_impossible = impossible = refused_answerable = answerable = 0
    cache: dict[str, str] = {}
    curves = {mode: dict.fromkeys(KS, 0) for mode in ("dense", "bm25", "fused", "qa")}
    for i, q in enumerate(qs):
        if progress:
            progress("asking", i, len(qs))
        a = index.ask(q.question, k=max(KS))
        ok, n = _fidelity(index, a, cache)
        faithful, total_quotes = faithful + ok, total_quotes + n
        if q.impossible:
            impossible += 1
            refused_impossible += not a.found
            continue
        answerable += 1
        refused_answerable += not a.found
        ranks = [r for r, quote in enumerate(a.quotes, 1) if quote.doc == q.doc]
        first = ranks[0] if ranks else None
        for mode, docs in _baselines(index, q.question).items():
            hit = next((r for r, d in enumerate(docs, 1) if d == q.doc), None)
            for k in KS:
                curves[mode][k] += hit is not None and hit <= k
        for k in KS:
            curves["qa"][k] += first is not None and first <= k
        rr += 1.0 / first if first else 0.0
        good = [r for r, quote in enumerate(a.quotes, 1) if any(g in quote.highlight_text for g in q.answers)]
        for k in KS:
            hits[k] += first is not None and first <= k
            sent[k] += bool(good) and good[0] <= k
    if progress:
        progress("asking", len(qs), len(qs))
    n = max(answerable, 1)
    result: dict[str, Any] = {
        "questions": len(qs),
        "answerable": answerable,
        "passage_recall": {f"@{k}": hits[k] / n for k in KS},
        "passage_recall_definition": "a top-k quote lies inside the gold paragraph (same document)",
        "mrr@20": rr / n,
        "answer_sentence_accuracy": {f"@{k}": sent[k] / n for k in KS},
        "quote_fidelity": faithful / total_quotes if total_quotes else 1.0,
        "refused_answerable": refused_answerable / n,
        "recall_by_ranking": {m: {f"@{k}": c[k] / n for k in KS} for m, c in curves.items()},
        "recall_by_ranking_definition": "passage recall@k of the dense list, the BM25 list, their "
        "reciprocal-rank fusion (before re-scoring) and qa's final quotes",
    }
    if impossible:
        result["refused_unanswerable"] = refused_impossible / impossible
    return result


def _baselines(index: Index, question: str) -> dict[str, list[str]]:
    """Document order of the dense list, the BM25 list and the fused list (top 20 each)."""
    gen = index.generation
    vec = index.embedder.encode([question])[0]
    terms = retrieval.tokenize([question])[0]
    s = index.settings

    def docs(rows: Iterable[int]) -> list[str]:
        return [gen.documents[int(gen.chunks[r][0])].id for r in rows]

    dense_rows, _ = retrieval.dense_search(gen, vec, max(KS))
    lexical = retrieval.bm25_scores(gen, terms)
    bm25_rows: Iterable[int] = np.argsort(-lexical, kind="stable")[: max(KS)].tolist()
    fused = retrieval.search(gen, vec, terms, s.candidates, s.dense_weight, s.rrf_k)[: max(KS)]
    return {"dense": docs(dense_rows), "bm25": docs(bm25_rows), "fused": docs(h.row for h in fused)}


def plot_recall(result: dict[str, Any], path: Path, title: str) -> None:
    """Write a PNG of recall@k per ranking (needs matplotlib: pip install 'qa[plot]').

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'qa[plot]' (or pip install matplotlib)"
        ) from exc
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for mode, values in result["recall_by_ranking"].items():
        ks = [int(k[1:]) for k in values]
        ax.plot(ks, list(values.values()), marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.set_xlabel("k (quotes)")
    ax.set_ylabel("passage recall@k")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _ndcg(ranked: list[str], rels: dict[str, int], k: int) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def rank_documents(answer: Answer) -> list[str]:
    """Documents in order of their best quote (ids without the .txt the corpus files carry)."""
    seen: dict[str, None] = {}
    for q in answer.quotes:
        seen.setdefault(q.doc.removesuffix(".txt"), None)
    return list(seen)


def eval_beir(
    queries: dict[str, str], qrels: dict[str, dict[str, int]], index: Index, progress: Progress | None = None
) -> dict[str, Any]:
    """nDCG@10, recall@100 and MRR@10 of the documents ranked by their best quote."""
    ids = [q for q in qrels if q in queries]
    ndcg = recall = mrr = 0.0
    for i, qid in enumerate(ids):
        if progress:
            progress("asking", i, len(ids))
        ranked = rank_documents(index.ask(queries[qid], k=100))
        rels = {d: r for d, r in qrels[qid].items() if r > 0}
        ndcg += _ndcg(ranked, rels, 10)
        recall += len(set(ranked[:100]) & set(rels)) / len(rels) if rels else 0.0
        mrr += next((1.0 / (r + 1) for r, d in enumerate(ranked[:10]) if d in rels), 0.0)
    if progress:
        progress("asking", len(ids), len(ids))
    n = max(len(ids), 1)
    return {"queries": len(ids), "ndcg@10": ndcg / n, "recall@100": recall / n, "mrr@10": mrr / n}


def eval_rationales(
    claims_path: Path, sentences_path: Path, index: Index, progress: Progress | None = None
) -> dict[str, Any]:
    """SciFact: is the highlighted sentence a gold rationale sentence?

    Counted over claims with evidence whose top quote comes from a gold evidence document; a
    hit is a highlight overlapping (in the document text) a sentence listed as rationale.
    """
    try:
        sentences = {}
        for line in sentences_path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            sentences[str(row["doc_id"])] = row["abstract"]
        claims = [json.loads(line) for line in claims_path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{claims_path} / {sentences_path}: not SciFact claims/sentences files: {exc}"
        ) from exc
    claims = [c for c in claims if c.get("evidence")]
    first = hits = 0
    for i, claim in enumerate(claims):
        if progress:
            progress("rationales", i, len(claims))
        answer = index.ask(claim["claim"], k=1)
        if not answer.quotes:
            continue
        quote = answer.quotes[0]
        doc = quote.doc.removesuffix(".txt")
        if doc not in claim["evidence"]:
            continue
        first += 1
        gold = {i for ev in claim["evidence"][doc] for i in ev["sentences"]}
        text = index.generation.document(
            next(d.row for d in index.generation.documents if d.id == quote.doc)
        ).text
        a, b = quote.highlight
        pos = 0
        for k, sentence in enumerate(sentences.get(doc, [])):
            found = text.find(sentence, pos)
            if found < 0:
                continue
            pos = found + len(sentence)
            if k in gold and found < b and a < found + len(sentence):
                hits += 1
                break
    if progress:
        progress("rationales", len(claims), len(claims))
    return {
        "claims_with_evidence": len(claims),
        "gold_document_first": first,
        "highlight_is_rationale": hits / first if first else 0.0,
    }
