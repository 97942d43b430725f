"""Serve the web app with the fake embedder, for browser tests that need no model.

Usage: python -m tests.helpers.fake_serve CORPUS INDEX PORT [--watch] [--slow SECONDS]
Builds the index first when there is none (like ``qa serve``); ``--slow`` makes every build
embedding call wait that long, so a rebuild lasts long enough to be clicked at twice.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import qa
from qa import store
from qa.app import create_app, launch
from tests.conftest import FakeEmbedder


class SlowFake(FakeEmbedder):
    def __init__(self, slow: float) -> None:
        super().__init__()
        self.slow = slow

    def encode_chunks(
        self,
        texts: Sequence[str],
        units: Sequence[Sequence[tuple[int, int]]],
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        time.sleep(self.slow)
        return super().encode_chunks(texts, units, progress)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("index", type=Path)
    ap.add_argument("port", type=int)
    ap.add_argument("--watch", action="store_true")
    ap.add_argument("--slow", type=float, default=0.0)
    args = ap.parse_args()
    settings = qa.Settings(corpus=args.corpus, index=args.index, min_score=0.3, watch_settle=0.3)
    emb = SlowFake(args.slow)
    if not store.generation_names(args.index):
        qa.build_index(settings=settings, embedder=FakeEmbedder())
    app = create_app(settings, emb, watch=args.watch)
    launch(app, settings, port=args.port, quiet=True)


if __name__ == "__main__":
    main()
