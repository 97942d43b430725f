"""Verification: how likely is it that the shown answer answers the question?

Retrieval similarity says a passage is *about* the question; it cannot tell "renounced
violence in 2003" from "accepted violence", or the 17th century from the 16th. The verifier
looks at the answer itself, with evidence that reads the question and the answer together:

* similarity: cosine of the answer sentence and of the passage, the quote score and its margin
  over the next passage, term and bigram overlap;
* missing words: the IDF-weighted share of the question's terms absent from the answer
  sentence, the window and the passage, and the rarest absent term;
* answer type: the question asks for a date / number / name / place and the window holds (or
  lacks) a phrase of that type that the question does not already contain;
* near misses: a name, number or date of the question absent from the passage; a negation in
  the question but not in the answer (or the reverse); a word of the question whose antonym
  stands in the answer in its place;
* agreement of the rankings (dense, BM25, fused ranks of the passage); a heading as answer.

A logistic model (weights in an open JSON file, ``qa/models/verifier.json``, fitted by
``benchmarks/train_verifier.py``) turns them into a probability; the answer is "found" when it
reaches the file's threshold (chosen on data: docs/tuning.md section 11). Nothing is pickled;
the file records its version, the features, the data it was fitted on and its scores.

Non-goals: generating or rewriting answers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qa import phrases
from qa.errors import ConfigError

FORMAT = "qa-verifier"
FORMAT_VERSION = 1

NEGATION = re.compile(
    r"\b(?:not|never|no|none|nobody|nothing|neither|nor|without|cannot|fail(?:ed|s)?\s+to)\b|n't\b",
    re.IGNORECASE,
)
# Antonym pairs people swap when they ask about what a text does not say ("accept" for
# "renounce", "concrete" for "abstract"). General English, not fitted to any data set.
_ANTONYM_PAIRS = """accept-reject accept-renounce adopt-renounce adopt-abandon increase-decrease
increase-reduce rise-fall rise-decline gain-lose win-lose won-lost before-after first-last
earliest-latest largest-smallest biggest-smallest most-least more-less more-fewer
highest-lowest higher-lower high-low begin-end start-end start-finish open-close
opened-closed allow-forbid allow-prohibit allowed-banned legal-illegal support-oppose
supported-opposed agree-disagree approve-reject include-exclude import-export imports-exports
north-south east-west northern-southern eastern-western upper-lower inside-outside
internal-external public-private success-failure succeed-fail successful-unsuccessful
strong-weak stronger-weaker positive-negative major-minor majority-minority maximum-minimum
long-short longer-shorter longest-shortest old-new older-newer oldest-newest young-old
early-late earlier-later ancient-modern abstract-concrete hard-easy harder-easier
possible-impossible same-different similar-different true-false always-never
increased-decreased expand-contract buy-sell bought-sold enter-leave arrive-depart
attack-defend create-destroy created-destroyed build-destroy built-destroyed born-died
birth-death male-female men-women rich-poor wealthy-poor heavy-light hot-cold warm-cold
wet-dry dark-light primary-secondary direct-indirect official-unofficial known-unknown
common-rare rural-urban domestic-foreign input-output upstream-downstream above-below
over-under ascend-descend victory-defeat ally-enemy allies-enemies"""
_ANTONYMS: list[dict[str, frozenset[str]]] = []


def antonyms() -> dict[str, frozenset[str]]:
    """Stemmed word -> stems of its antonyms (stems, so "renounced" meets "accepts")."""
    if not _ANTONYMS:
        from qa.retrieval import stem

        table: dict[str, frozenset[str]] = {}
        for pair in _ANTONYM_PAIRS.split():
            a, b = (stem(w) for w in pair.split("-"))
            table[a] = table.get(a, frozenset()) | {b}
            table[b] = table.get(b, frozenset()) | {a}
        _ANTONYMS.append(table)
    return _ANTONYMS[0]


def question_names(question: str) -> list[str]:
    """Capitalised names in the question ("Jamaa Islamiya"), without its first word when that
    is a common sentence start ("When", "The")."""
    out = []
    for c in phrases.candidates(question):
        if c.kind == "name":
            out.append(question[c.start : c.end])
    return out


def question_numbers(question: str) -> list[str]:
    """Dates and numbers in the question ("16th century", "1990")."""
    return [
        question[c.start : c.end]
        for c in phrases.candidates(question)
        if c.kind in (phrases.DATE, phrases.NUMBER)
    ]


@dataclass(frozen=True)
class Evidence:
    """What the answer stage knows about its best answer, in plain numbers and strings."""

    question: str
    q_terms: Sequence[str]  # BM25 terms of the question
    idf: dict[str, float]
    top_idf: float
    sentence: str  # the best sentence
    window: str  # the answer window (1-3 sentences)
    passage: str  # the whole quoted passage (window included)
    sentence_terms: frozenset[str]
    window_terms: frozenset[str]
    passage_terms: frozenset[str]
    sentence_cos: float
    passage_cos: float
    score: float  # the top quote's score
    next_score: float  # the second quote's score (0 when there is none)
    sentence_overlap: float
    sentence_bigram: float
    dense_rank: int  # 0 = not in the dense list
    bm25_rank: int  # 0 = not in the BM25 list
    fused_rank: int  # 0-based rank in the fused candidate list
    heading: bool  # the best sentence is a heading or title


def features(ev: Evidence) -> dict[str, float]:
    """The verifier's inputs, by name. Cheap: string checks on one window and one passage."""
    q = ev.question
    terms = set(ev.q_terms)
    weight = {t: ev.idf.get(t, ev.top_idf) for t in terms}
    total = sum(weight.values()) or 1.0
    top = ev.top_idf or 1.0

    def missing(present: frozenset[str]) -> tuple[float, float]:
        gone = [weight[t] for t in terms if t not in present]
        return sum(gone) / total, max(gone, default=0.0) / top

    miss_sent, _ = missing(ev.sentence_terms)
    miss_win, miss_win_max = missing(ev.window_terms)
    miss_passage, miss_passage_max = missing(ev.passage_terms)
    wanted = phrases.answer_type(q)
    q_words = phrases.words_of(q)
    measure = phrases.measure_question(q)

    def has_type(text: str) -> bool:
        return any(phrases.fits(text, c, wanted, q_words, measure) for c in phrases.candidates(text))

    typed = wanted != phrases.OTHER
    type_in_sentence = typed and has_type(ev.sentence)
    type_in_window = typed and (type_in_sentence or has_type(ev.window))
    window_lc, passage_lc = ev.window.lower(), ev.passage.lower()
    names = question_names(q)
    numbers = question_numbers(q)
    q_neg = NEGATION.search(q) is not None
    s_neg = NEGATION.search(ev.sentence) is not None
    w_neg = NEGATION.search(ev.window) is not None
    opposite = antonyms()
    antonym = any(t not in ev.window_terms and opposite.get(t, frozenset()) & ev.window_terms for t in terms)
    f = {
        "sentence_cos": ev.sentence_cos,
        "passage_cos": ev.passage_cos,
        "score": ev.score,
        "margin": ev.score - ev.next_score,
        "sentence_overlap": ev.sentence_overlap,
        "sentence_bigram": ev.sentence_bigram,
        "missing_sentence": miss_sent,
        "missing_window": miss_win,
        "missing_passage": miss_passage,
        "missing_window_max": miss_win_max,
        "missing_passage_max": miss_passage_max,
        "terms": math.log1p(len(terms)),
        "typed": float(typed),
        "type_in_sentence": float(type_in_sentence),
        "type_in_window": float(type_in_window),
        "name_missing_window": float(any(n.lower() not in window_lc for n in names)),
        "name_missing_passage": float(any(n.lower() not in passage_lc for n in names)),
        "number_missing_window": float(any(n.lower() not in window_lc for n in numbers)),
        "number_missing_passage": float(any(n.lower() not in passage_lc for n in numbers)),
        "negation_question": float(q_neg),
        "negation_question_only": float(q_neg and not w_neg),
        "negation_answer_only": float(s_neg and not q_neg),
        "antonym": float(antonym),
        "dense_rank": math.log1p(ev.dense_rank or 200),
        "bm25_rank": math.log1p(ev.bm25_rank or 200),
        "fused_rank": math.log1p(ev.fused_rank),
        "heading": float(ev.heading),
    }
    return f


@dataclass(frozen=True)
class Verifier:
    """A logistic model over ``features``: z = w . (x - mean) / scale + b, then the calibration
    p = sigmoid(slope * z + intercept), fitted on held-out scores against "the shown answer
    contains a correct answer", so that ``p`` reads as that probability (the reliability
    diagram of ``qa eval squad --plot``). The calibration is monotone: it changes the number
    shown, never the order of two answers."""

    name: str
    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    meta: dict[str, Any]
    slope: float = 1.0
    intercept: float = 0.0

    def probability(self, f: dict[str, float]) -> float:
        x = np.array([f.get(n, 0.0) for n in self.names], dtype=np.float64)
        z = float(((x - self.mean) / self.scale) @ self.weights + self.bias)
        z = self.slope * z + self.intercept
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "features": list(self.names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "calibration": {"slope": self.slope, "intercept": self.intercept},
            "threshold": self.threshold,
            **{k: v for k, v in self.meta.items() if k not in _KEYS},
        }

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


_KEYS = {
    "format",
    "format_version",
    "name",
    "features",
    "mean",
    "scale",
    "weights",
    "bias",
    "calibration",
    "threshold",
}
DEFAULT = "verifier.json"


def load(path: Path | None = None) -> Verifier:
    """Read a verifier file (default: the one shipped in ``qa/models``).

    Raises:
        ConfigError: the file is missing, not a qa verifier, of another version or malformed.
    """
    try:
        if path is None:
            text = resources.files("qa").joinpath("models", DEFAULT).read_text(encoding="utf-8")
            where = f"qa/models/{DEFAULT}"
        else:
            text = Path(path).read_text(encoding="utf-8")
            where = str(path)
        body = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the answer verifier {path or DEFAULT}: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ConfigError(f"{where} is not a qa verifier file (QA_VERIFIER)")
    if body.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{where}: verifier format {body.get('format_version')!r}; this qa reads {FORMAT_VERSION}"
        )
    try:
        names = tuple(str(n) for n in body["features"])
        mean = np.asarray(body["mean"], dtype=np.float64)
        scale = np.asarray(body["scale"], dtype=np.float64)
        weights = np.asarray(body["weights"], dtype=np.float64)
        bias, threshold = float(body["bias"]), float(body["threshold"])
        name = str(body["name"])
        calibration = body.get("calibration", {"slope": 1.0, "intercept": 0.0})
        slope, intercept = float(calibration["slope"]), float(calibration["intercept"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: malformed verifier ({exc})") from exc
    if not (len(names) == len(mean) == len(scale) == len(weights)) or not np.all(scale > 0):
        raise ConfigError(f"{where}: feature, mean, scale and weight lists differ in length or scale <= 0")
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"{where}: threshold {threshold} is not a probability")
    meta = {k: v for k, v in body.items() if k not in _KEYS}
    if not slope > 0:
        raise ConfigError(
            f"{where}: calibration slope {slope} must be positive (it may not reverse the order)"
        )
    return Verifier(name, names, mean, scale, weights, bias, threshold, meta, slope, intercept)
