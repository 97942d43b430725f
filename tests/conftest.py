"""Shared fixtures: a tiny deterministic fake embedder and temp corpus/index folders.

The fake embedder hashes lower-cased words into a 1024-dimensional bag-of-words vector, so
texts sharing words are similar. Unit tests use it; tests marked ``model`` use the real one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "corpus"
DATA = Path(__file__).resolve().parent / "data"
_TOKEN = re.compile(r"\w+|[^\w\s]")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "who",
        "what",
    ]
)


class FakeEmbedder:
    """Deterministic stand-in for a sentence-transformers model (no torch, no files)."""

    name = "fake-bow-1024"
    dimension = 1024
    max_tokens = 254
    precision = "float32"

    def __init__(self, fingerprint: str = "fake-v1") -> None:
        self._fingerprint = fingerprint
        self.encoded: list[str] = []  # every text ever embedded, to count re-embedding

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def token_starts(self, text: str) -> np.ndarray:
        return np.fromiter((m.start() for m in _TOKEN.finditer(text)), dtype=np.int64)

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in _STOP:
                    continue
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dimension] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
        self.encoded.extend(texts)
        if progress is not None:
            progress(len(texts), len(texts))
        return out

    def encode_chunks(
        self,
        texts: Sequence[str],
        units: Sequence[Sequence[tuple[int, int]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        vectors = self.encode(texts, progress)
        seen = len(self.encoded)
        unit_vectors = [
            self.encode([t[a:b] for a, b in spans]) for t, spans in zip(texts, units, strict=True)
        ]
        del self.encoded[seen:]  # count chunk embeddings only
        return vectors, unit_vectors


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A temp copy of the default corpus."""
    dest = tmp_path / "corpus"
    shutil.copytree(DEFAULT_CORPUS, dest)
    return dest


@pytest.fixture
def settings(tmp_path: Path, corpus: Path) -> Settings:
    """Settings pointing at temp folders, with a threshold suited to the fake embedder."""
    return Settings(corpus=corpus, index=tmp_path / "index", min_score=0.3, parse_timeout=30)


# Debian's Chromium, driven by Playwright in the browser tests (its own download fails here)
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()
