"""The answer verifier (qa.verification): features on hand-made near misses, the shipped model
file, and round trips of the open JSON format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa import verification
from qa.errors import ConfigError
from qa.retrieval import tokenize
from qa.verification import Evidence


def evidence(question: str, sentence: str, passage: str | None = None, **numbers: float) -> Evidence:
    passage = passage or sentence
    q_terms = tokenize([question])[0]
    terms = tokenize([sentence, passage])
    values = {
        "sentence_cos": 0.7,
        "passage_cos": 0.6,
        "score": 2.0,
        "next_score": 1.5,
        "sentence_overlap": 0.8,
        "sentence_bigram": 0.5,
    }
    values.update(numbers)
    return Evidence(
        question=question,
        q_terms=q_terms,
        idf={t: 2.0 for t in q_terms},
        top_idf=5.0,
        sentence=sentence,
        window=sentence,
        passage=passage,
        sentence_terms=frozenset(terms[0]),
        window_terms=frozenset(terms[0]),
        passage_terms=frozenset(terms[1]),
        dense_rank=1,
        bm25_rank=1,
        fused_rank=0,
        heading=False,
        **values,  # type: ignore[arg-type]
    )


def test_negation_in_the_question_only() -> None:
    f = verification.features(
        evidence(
            "What does not form the basis for most separation results?",
            "The time and space hierarchy theorems form the basis for most separation results.",
        )
    )
    assert f["negation_question"] == 1.0 and f["negation_question_only"] == 1.0
    f = verification.features(
        evidence("What does not form the basis?", "Nothing forms the basis; it is not known.")
    )
    assert f["negation_question_only"] == 0.0


def test_antonym_in_place_of_the_question_word() -> None:
    f = verification.features(
        evidence("When did Jamaa Islamiya accept violence?", "Jamaa Islamiya renounced violence in 2003.")
    )
    assert f["antonym"] == 1.0  # stems: "accept" against "renounced"
    f = verification.features(
        evidence(
            "What is the concrete question to be solved?",
            "A problem refers to the abstract question to be solved.",
        )
    )
    assert f["antonym"] == 1.0
    f = verification.features(
        evidence(
            "What is the abstract question?",
            "A problem refers to the abstract question, not the concrete one.",
        )
    )
    assert f["antonym"] == 0.0  # the question's own word is there too


def test_a_changed_number_or_name_is_missing() -> None:
    f = verification.features(
        evidence(
            "Aristotelian physics would not be corrected until the 16th century work of whom?",
            "Aristotelian physics would not be fully corrected until the 17th century work of "
            "Galileo Galilei.",
        )
    )
    assert f["number_missing_window"] == 1.0 and f["number_missing_passage"] == 1.0
    f = verification.features(
        evidence(
            "How many beds does the Maria Memorial Health Institute have?",
            "The city is home to the Children's Memorial Health Institute, the highest-reference hospital.",
        )
    )
    assert f["name_missing_window"] == 1.0 and f["typed"] == 1.0 and f["type_in_window"] == 0.0


def test_answer_type_present() -> None:
    f = verification.features(
        evidence("Who is the head affineur?", "The head affineur is Priya Vandermolen, who joined in 2011.")
    )
    assert f["typed"] == 1.0 and f["type_in_sentence"] == 1.0 and f["missing_sentence"] == 0.0
    f = verification.features(
        evidence(
            "How many people work at the observatory?",
            "The observatory welcomed 14,300 visitors this year.",
        )
    )
    assert f["type_in_sentence"] == 1.0 and f["missing_sentence"] > 0.3  # "people work" are not there


def test_the_shipped_verifier_loads_and_orders_answers() -> None:
    v = verification.load()
    assert v.names and 0 < v.threshold < 1 and v.meta["script"] == "benchmarks/train_verifier.py"
    good = verification.features(
        evidence("Who is the head affineur?", "The head affineur is Priya Vandermolen.", sentence_cos=0.8)
    )
    bad = verification.features(
        evidence(
            "What does not form the basis for the 16th century Maria results?",
            "The hierarchy theorems form the basis for 17th century results.",
            sentence_cos=0.5,
            sentence_overlap=0.4,
        )
    )
    assert v.probability(good) > v.threshold > v.probability(bad)


def test_round_trip_and_refusals(tmp_path: Path) -> None:
    v = verification.load()
    path = tmp_path / "v.json"
    v.save(path)
    again = verification.load(path)
    assert again.names == v.names and again.threshold == v.threshold
    assert np.array_equal(again.weights, v.weights) and np.array_equal(again.scale, v.scale)
    f = verification.features(evidence("Who is the head affineur?", "The head affineur is Priya."))
    assert again.probability(f) == v.probability(f)
    body = json.loads(path.read_text())
    for broken, message in [
        ({**body, "format": "pickle"}, "not a qa verifier"),
        ({**body, "format_version": 99}, "verifier format 99"),
        ({**body, "weights": body["weights"][:-1]}, "differ in length"),
        ({**body, "threshold": 1.5}, "not a probability"),
        ({k: v for k, v in body.items() if k != "bias"}, "malformed"),
    ]:
        path.write_text(json.dumps(broken))
        with pytest.raises(ConfigError, match=message):
            verification.load(path)
    path.write_text("not json")
    with pytest.raises(ConfigError, match="cannot read"):
        verification.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        verification.load(tmp_path / "missing.json")
