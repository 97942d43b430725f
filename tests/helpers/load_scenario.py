"""The load scenario shared by ``tests/test_load.py`` (fake embedder) and
``benchmarks/load.py`` (real model): generated reports, the questions clients ask, and the
document that rebuilds add and remove in turn."""

from __future__ import annotations

import random
from pathlib import Path

TOGGLED = "zebra-facts.txt"
ZEBRA_Q = "What stripes do zebras have?"
QUESTIONS = [
    "Who is OpenAI partnering with to manufacture AI hardware?",
    ZEBRA_Q,
    "Which report mentions the glacier near the harbour?",
    "Why is Foxconn interested in AI servers?",
    "What was lantern-shaped in the orchard?",
]
WORDS = [
    "river",
    "harbour",
    "engine",
    "ledger",
    "orchard",
    "glacier",
    "quarry",
    "lantern",
    "compass",
    "meadow",
    "violin",
    "canal",
    "beacon",
    "summit",
    "tundra",
    "falcon",
    "copper",
    "pepper",
    "saddle",
    "marble",
]


def write_reports(corpus: Path, n: int, seed: int = 5) -> None:
    """``n`` reports of 40 generated sentences each (the same text for the same seed)."""
    rng = random.Random(seed)
    for i in range(n):
        sentences = [
            f"Report {i} notes that the {rng.choice(WORDS)} near the {rng.choice(WORDS)} was "
            f"{rng.choice(WORDS)}-shaped in {1900 + rng.randrange(120)}."
            for _ in range(40)
        ]
        (corpus / f"report-{i:03d}.txt").write_text(" ".join(sentences), encoding="utf-8")


def toggle_document(corpus: Path, n: int) -> None:
    """Rebuild ``n`` of the scenario: even ones add the zebra document, odd ones delete it."""
    doc = corpus / TOGGLED
    if n % 2 == 0:
        doc.write_text("# Zebras\n\nZebras have black and white stripes.\n", encoding="utf-8")
    else:
        doc.unlink()
