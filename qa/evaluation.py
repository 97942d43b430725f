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
import re
import string
from collections import Counter
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
_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


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


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, gold: str) -> float:
    """SQuAD token F1 of ``prediction`` against ``gold`` (after ``normalize_answer``)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def refusal_auc(answerable: list[float], unanswerable: list[float]) -> float:
    """Probability that an answerable question gets a higher confidence than an unanswerable
    one (ties count half): the area under the ROC curve of confidence as a refusal score."""
    if not answerable or not unanswerable:
        return float("nan")
    scores = np.array(answerable + unanswerable)
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = len(answerable), len(unanswerable)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration(confidence: list[float], correct: list[bool], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-width confidence bins, and the bins themselves
    (mean confidence, accuracy, count) for a reliability diagram."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = []
    ece = 0.0
    for i in range(bins):
        inside = (conf >= edges[i]) & ((conf < edges[i + 1]) if i < bins - 1 else (conf <= 1.0))
        if inside.any():
            mean_conf, acc = float(conf[inside].mean()), float(ok[inside].mean())
            ece += inside.sum() / max(len(conf), 1) * abs(mean_conf - acc)
            table.append({"confidence": mean_conf, "accuracy": acc, "count": int(inside.sum())})
    return {"ece": float(ece), "bins": table}


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
    shown = 0
    em = f1 = 0.0
    with_phrase = 0
    conf_answerable: list[float] = []
    conf_unanswerable: list[float] = []
    confidences: list[float] = []
    correct: list[bool] = []
    cache: dict[str, str] = {}
    curves = {mode: dict.fromkeys(KS, 0) for mode in ("dense", "bm25", "fused", "qa")}
    for i, q in enumerate(qs):
        if progress:
            progress("asking", i, len(qs))
        a = index.ask(q.question, k=max(KS))
        ok, n = _fidelity(index, a, cache)
        faithful, total_quotes = faithful + ok, total_quotes + n
        confidences.append(a.confidence)
        if q.impossible:
            impossible += 1
            refused_impossible += not a.found
            conf_unanswerable.append(a.confidence)
            correct.append(False)
            continue
        answerable += 1
        conf_answerable.append(a.confidence)
        refused_answerable += not a.found
        top_shown = bool(a.quotes) and any(g in a.quotes[0].highlight_text for g in q.answers)
        correct.append(top_shown)
        shown += a.found and top_shown
        # what the user reads as the answer: the phrase when there is one, else the answer sentence(s)
        said = "" if not a.found else (a.phrase.text if a.phrase is not None else a.answer)
        with_phrase += a.found and a.phrase is not None
        em += max(float(normalize_answer(said) == normalize_answer(g)) for g in q.answers)
        f1 += max(f1_score(said, g) for g in q.answers)
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
        "shown_answer_correct": shown / n,
        "shown_answer_correct_definition": "headline, as the user sees it: the answer is found (not "
        "refused) and the shown answer (the highlighted sentences) contains a gold answer",
        "phrase": {"exact_match": em / n, "f1": f1 / n, "coverage": with_phrase / n},
        "phrase_definition": "SQuAD EM/F1 of what the user reads as the answer: the bold phrase, or "
        "the answer sentence(s) when no phrase is marked; a refusal scores 0",
        "passage_recall": {f"@{k}": hits[k] / n for k in KS},
        "passage_recall_definition": "a top-k quote lies inside the gold paragraph (same document)",
        "mrr@20": rr / n,
        "answer_sentence_accuracy": {f"@{k}": sent[k] / n for k in KS},
        "answer_sentence_accuracy_definition": "the highlighted answer of one of the top-k quotes "
        "contains a gold answer, refusals ignored (the pre-verifier metric)",
        "quote_fidelity": faithful / total_quotes if total_quotes else 1.0,
        "refused_answerable": refused_answerable / n,
        "calibration": calibration(confidences, correct),
        "calibration_definition": "confidence against 'the shown answer contains a gold answer' "
        "(unanswerable questions: never); ece = expected calibration error, 10 bins",
        "recall_by_ranking": {m: {f"@{k}": c[k] / n for k in KS} for m, c in curves.items()},
        "recall_by_ranking_definition": "passage recall@k of the dense list, the BM25 list, their "
        "reciprocal-rank fusion (before re-scoring) and qa's final quotes",
    }
    if impossible:
        result["refused_unanswerable"] = refused_impossible / impossible
        result["refusal_auc"] = refusal_auc(conf_answerable, conf_unanswerable)
    return result


KINDS = ("answerable", "near-miss", "off-topic")


def load_questions(path: Path) -> list[dict[str, Any]]:
    """Questions of a JSONL set (see tests/data/smalldocs/README.md): ``id``, ``question``,
    ``kind`` (answerable / near-miss / off-topic) and, for answerable ones, ``doc``, ``answer``
    and ``sentence``.

    Raises:
        ConfigError: the file is missing or a line is malformed (the message names the line).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["kind"] not in KINDS or not str(row["question"]).strip():
                raise ValueError(f"kind must be one of {', '.join(KINDS)}")
            if row["kind"] == "answerable" and not (row.get("doc") and row.get("answer")):
                raise ValueError("an answerable question needs doc and answer")
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{n}: not a question line ({exc})") from exc
        out.append(row)
    return out


def eval_questions(
    questions: list[dict[str, Any]], index: Index, progress: Progress | None = None
) -> dict[str, Any]:
    """Answer a JSONL question set and count what the user sees, by kind of question."""
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    em = f1 = 0.0
    faithful = total = 0
    for i, q in enumerate(questions):
        if progress:
            progress("asking", i, len(questions))
        a = index.ask(q["question"])
        for quote in a.quotes:
            doc = index.generation.document(
                next(d.row for d in index.generation.documents if d.id == quote.doc)
            )
            faithful += doc.text[quote.start : quote.end] == quote.text
            total += 1
        top = a.quotes[0] if a.quotes else None
        record = {"id": q["id"], "found": a.found, "confidence": round(a.confidence, 4)}
        if q["kind"] == "answerable":
            sentence = q.get("sentence") or q["answer"]
            in_top = top is not None and top.doc == q["doc"] and sentence in top.text
            record["answer_in_top_quote"] = in_top
            record["shown_correct"] = (
                a.found and top is not None and top.doc == q["doc"] and q["answer"] in a.answer
            )
            said = "" if not a.found else (a.phrase.text if a.phrase is not None else a.answer)
            em += float(normalize_answer(said) == normalize_answer(q["answer"]))
            f1 += f1_score(said, q["answer"])
        by_kind[q["kind"]].append(record)
    if progress:
        progress("asking", len(questions), len(questions))

    def share(rows: list[dict[str, Any]], key: str, value: bool = True) -> float:
        return sum(r[key] == value for r in rows) / len(rows) if rows else float("nan")

    answerable = by_kind["answerable"]
    n = max(len(answerable), 1)
    return {
        "questions": {k: len(v) for k, v in by_kind.items()},
        "shown_answer_correct": share(answerable, "shown_correct"),
        "shown_answer_correct_definition": "answerable questions found, with the answer phrase inside "
        "the shown answer and the right document",
        "answerable_refused": share(answerable, "found", False),
        "refused_with_answer_in_top_quote": [
            r["id"] for r in answerable if not r["found"] and r["answer_in_top_quote"]
        ],
        "near_miss_refused": share(by_kind["near-miss"], "found", False),
        "off_topic_refused": share(by_kind["off-topic"], "found", False),
        "phrase": {"exact_match": em / n, "f1": f1 / n},
        "quote_fidelity": faithful / total if total else 1.0,
        "answered": {k: [r["id"] for r in v if r["found"]] for k, v in by_kind.items() if k != "answerable"},
    }


def load_followups(path: Path, squad: Path) -> list[list[dict[str, Any]]]:
    """Conversations made by ``make_followups.py`` from ``squad``, each a list of turns with
    ``doc`` set to the id ``load_squad`` gives the gold paragraph.

    Raises:
        ConfigError: a file is missing or not in the expected layout.
    """
    try:
        articles = json.loads(squad.read_text(encoding="utf-8"))["data"]
        index_of = {article["title"]: a for a, article in enumerate(articles)}
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        conversations: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            row["doc"] = f"a{index_of[row['article']]:03d}-p{int(row['paragraph']):03d}.txt"
            conversations.setdefault(int(row["conversation"]), []).append(row)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} / {squad}: not a follow-up file made from this SQuAD file ({type(exc).__name__}: {exc})"
        ) from exc
    return [sorted(turns, key=lambda r: int(r["turn"])) for _, turns in sorted(conversations.items())]


def eval_followups(
    conversations: list[list[dict[str, Any]]], index: Index, progress: Progress | None = None
) -> dict[str, Any]:
    """Passage recall@1 of follow-up turns in conversation and alone, and of topic switches.

    Each conversation is asked turn by turn through ``Index.conversation()``. Rewritten turns
    ("When did it ...?") are also asked alone, and in their original wording alone; switch
    turns (a question from another article) are also asked alone.
    """
    counts: dict[str, list[int]] = {
        k: [0, 0]
        for k in (
            "first_turns",
            "followups_in_conversation",
            "followups_rewritten_alone",
            "followups_original_alone",
            "switch_with_history",
            "switch_alone",
        )
    }
    used = {"followups": [0, 0], "switch": [0, 0]}

    def hit(answer: Answer, turn: dict[str, Any]) -> int:
        return int(bool(answer.quotes) and answer.quotes[0].doc == turn["doc"])

    def count(key: str, ok: int) -> None:
        counts[key][0] += ok
        counts[key][1] += 1

    for i, turns in enumerate(conversations):
        if progress:
            progress("conversations", i, len(conversations))
        chat = index.conversation()
        for turn in turns:
            answer = chat.ask(turn["question"], k=1)
            if turn["switch"]:
                count("switch_with_history", hit(answer, turn))
                count("switch_alone", hit(index.ask(turn["question"], k=1), turn))
                used["switch"][0] += answer.used_history
                used["switch"][1] += 1
            elif turn["rewritten"]:
                count("followups_in_conversation", hit(answer, turn))
                count("followups_rewritten_alone", hit(index.ask(turn["question"], k=1), turn))
                count("followups_original_alone", hit(index.ask(turn["original"], k=1), turn))
                used["followups"][0] += answer.used_history
                used["followups"][1] += 1
            else:
                count("first_turns", hit(answer, turn))
    if progress:
        progress("conversations", len(conversations), len(conversations))
    recall = {k: (ok / n if n else float("nan")) for k, (ok, n) in counts.items()}
    original = recall["followups_original_alone"]
    return {
        "conversations": len(conversations),
        "turns": {k: n for k, (_, n) in counts.items()},
        "recall@1": recall,
        "recall@1_definition": "the top quote lies inside the gold paragraph (same document)",
        "followups_vs_original": recall["followups_in_conversation"] / original if original else float("nan"),
        "switch_change": recall["switch_with_history"] - recall["switch_alone"],
        "history_used": {k: (u / n if n else float("nan")) for k, (u, n) in used.items()},
    }


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


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'qa[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def plot_recall(result: dict[str, Any], path: Path, title: str) -> None:
    """Write a PNG of recall@k per ranking (needs matplotlib: pip install 'qa[plot]').

    Raises:
        ConfigError: matplotlib is not installed.
    """
    plt = _pyplot()
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


def plot_reliability(result: dict[str, Any], path: Path, title: str) -> None:
    """Write a PNG reliability diagram of ``result["calibration"]`` (needs matplotlib).

    Raises:
        ConfigError: matplotlib is not installed.
    """
    plt = _pyplot()
    bins = result["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.bar(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        width=0.08,
        alpha=0.6,
        label="share correct in the bin",
    )
    for b in bins:
        ax.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("shown answer contains a gold answer")
    ax.set_title(f"{title}\nECE {result['calibration']['ece']:.3f}")
    ax.legend(loc="upper left")
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
