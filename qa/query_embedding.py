"""Query embedding without torch: a sentence-transformers folder run on numpy.

``NumpyEmbedder`` reads the model folder the way sentence-transformers does: ``modules.json``
(Transformer -> Pooling -> optional Normalize), the Transformer's
``sentence_bert_config.json`` (max_seq_length, do_lower_case), ``1_Pooling/config.json``
(pooling mode), ``config.json`` and ``model.safetensors`` (the BERT, see ``qa.encoder``) and
``tokenizer.json`` (the ``tokenizers`` library, truncated at max_seq_length as
sentence-transformers truncates). Its vectors equal sentence-transformers' within 1e-5 in
cosine (tests/test_query_encoder.py checks a few hundred varied questions), and importing it
costs numpy + tokenizers instead of torch + transformers + scikit-learn (seconds).

A folder it does not implement (another architecture, a Dense module, a prompt, a pooling
mode it lacks, no tokenizer.json or safetensors) raises ``UnsupportedModelError`` with the
reason; ``qa.embedding.get_query_embedder`` then falls back to sentence-transformers and
says so in ``qa info``. It never guesses: a refusal costs speed, a guess could cost a wrong
vector.

Builds keep sentence-transformers (big batches, bfloat16 where the CPU has it);
``encode_chunks`` is implemented here too, so this class is a complete ``Embedder``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.embedding import DEFAULT_MODEL_NAME, Progress, _pool_units, default_model_path, model_fingerprint
from qa.encoder import BertEncoder
from qa.errors import ModelLoadError, UnsupportedModelError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens")
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# sentence_bert_config.json keys whose value does not change a text embedding (or is checked).
_TRANSFORMER_KEYS = {"max_seq_length", "do_lower_case", "transformer_task", "modality_config",
                     "module_output_name", "unpad_inputs"}  # fmt: skip
_TRANSFORMER_NEUTRAL: dict[str, Any] = {"query_length": None, "document_length": None,
                                        "query_expansion": None, "processing_kwargs": {}}  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """What sentence-transformers would do with a model folder, as far as text goes."""

    transformer_dir: Path
    max_seq_length: int
    do_lower_case: bool
    pooling: tuple[str, ...]
    normalize: bool
    dimension: int


def read_spec(path: Path) -> ModelSpec:
    """Read a sentence-transformers folder's configuration; refuse what is not implemented.

    Raises:
        UnsupportedModelError: the folder needs something the numpy path does not do (says what).
    """
    try:
        return _read_spec(path)
    except (AttributeError, TypeError, ValueError) as exc:  # a field of an unexpected type
        raise UnsupportedModelError(
            f"{path}: unexpected sentence-transformers configuration ({exc})"
        ) from exc


def _read_spec(path: Path) -> ModelSpec:
    modules = _json(path / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise UnsupportedModelError(f"{path / 'modules.json'} is missing or not a module list")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] if isinstance(m, dict) else "" for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise UnsupportedModelError(
            f"{path / 'modules.json'}: modules {' -> '.join(kinds)}; the numpy encoder implements "
            "Transformer -> Pooling [-> Normalize]"
        )
    transformer_dir = path / str(modules[0].get("path", ""))
    st = _json(transformer_dir / "sentence_bert_config.json")
    st = st if isinstance(st, dict) else {}
    for key, value in st.items():
        if key not in _TRANSFORMER_KEYS and not (
            key in _TRANSFORMER_NEUTRAL and value == _TRANSFORMER_NEUTRAL[key]
        ):
            raise UnsupportedModelError(
                f"{transformer_dir / 'sentence_bert_config.json'}: {key!r} is not supported"
            )
    if st.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise UnsupportedModelError(f"transformer_task {st['transformer_task']!r} is not feature-extraction")
    if st.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise UnsupportedModelError(
            f"module_output_name {st['module_output_name']!r} is not token_embeddings"
        )
    text = (
        (st.get("modality_config") or {}).get("text") if isinstance(st.get("modality_config"), dict) else None
    )
    if isinstance(text, dict) and text.get("method_output_name", "last_hidden_state") != "last_hidden_state":
        raise UnsupportedModelError(
            f"text modality reads {text['method_output_name']!r}, not last_hidden_state"
        )
    prompts = _json(path / "config_sentence_transformers.json")
    if isinstance(prompts, dict) and prompts.get("default_prompt_name"):
        raise UnsupportedModelError(
            f"default prompt {prompts['default_prompt_name']!r} (prompts are not supported)"
        )
    config = _json(transformer_dir / "config.json")
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"{transformer_dir / 'config.json'} is missing")
    positions = int(config.get("max_position_embeddings", 0))
    max_len: Any = st.get("max_seq_length")
    if max_len is None:  # sentence-transformers: the tokenizer's limit, capped at the position table
        tok_config = _json(transformer_dir / "tokenizer_config.json")
        tok_config = tok_config if isinstance(tok_config, dict) else {}
        max_len = min(int(tok_config.get("model_max_length", positions)), positions)
    if not 2 < int(max_len) <= positions:
        raise UnsupportedModelError(f"max_seq_length {max_len} does not fit {positions} positions")

    pooling_dir = path / str(modules[1].get("path", ""))
    pool = _json(pooling_dir / "config.json")
    if not isinstance(pool, dict):
        raise UnsupportedModelError(f"{pooling_dir / 'config.json'} is missing")
    modes = pool.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in _LEGACY_POOLING.items() if pool.get(key)]
    modes = tuple([modes] if isinstance(modes, str) else modes)
    if not modes or any(m not in POOLING_MODES for m in modes):
        raise UnsupportedModelError(
            f"pooling {list(modes)}: the numpy encoder implements {', '.join(POOLING_MODES)}"
        )
    hidden = int(config.get("hidden_size", 0))
    dim = int(pool.get("word_embedding_dimension") or pool.get("embedding_dimension") or hidden)
    if dim != hidden:
        raise UnsupportedModelError(f"pooling dimension {dim} != hidden_size {hidden}")
    return ModelSpec(transformer_dir, int(max_len), bool(st.get("do_lower_case", False)), modes,
                     kinds[2:] == ["Normalize"], dim * len(modes))  # fmt: skip


def _json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(f"cannot read {path}: {exc}") from exc


class NumpyEmbedder:
    """A sentence-transformers model run on numpy (see the module docstring). Thread-safe.

    The weights are memory-mapped on first use; a forward pass holds no lock, so questions
    from several threads run in parallel (numpy's BLAS releases the GIL).
    """

    backend = "numpy"
    precision = "float32"

    def __init__(self, path: Path, name: str | None = None, batch_size: int = 32) -> None:
        """Check that the folder is supported and map its weights (nothing is read yet but
        small JSON files and the safetensors header; the tokenizer loads on first use).

        Raises:
            UnsupportedModelError: the numpy path does not implement this folder.
            ModelLoadError: the folder does not exist or a file is unreadable.
        """
        if not path.is_dir():
            raise ModelLoadError(f"model folder {path} does not exist: set QA_MODEL / --model")
        self.spec = read_spec(path)
        if not (self.spec.transformer_dir / "tokenizer.json").is_file():
            raise UnsupportedModelError(f"{self.spec.transformer_dir / 'tokenizer.json'} is missing")
        self.encoder = BertEncoder.from_folder(self.spec.transformer_dir)
        if self.encoder.config.hidden_size * len(self.spec.pooling) != self.spec.dimension:
            raise UnsupportedModelError(f"{path}: hidden_size disagrees with the pooling dimension")
        self.path = path
        self.name = name or (DEFAULT_MODEL_NAME if path == default_model_path() else path.name)
        self.batch_size = batch_size
        self.dimension = self.spec.dimension
        self.max_tokens = self.spec.max_seq_length - _special_tokens(
            self.spec.transformer_dir / "tokenizer.json"
        )
        self.note = "numpy (qa.encoder); torch is not imported for questions"
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._plain_tokenizer: Any = None

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.path)

    def load(self) -> Any:
        """Read the tokenizer and run BLAS on ``BLAS_THREADS`` (once; ``encode`` calls it).

        Returns the truncating ``tokenizers.Tokenizer`` used for questions.
        """
        with self._lock:
            if self._tokenizer is None:
                tok = self._new_tokenizer()
                tok.enable_truncation(self.spec.max_seq_length, strategy="longest_first", direction="right")
                limit_blas_threads(BLAS_THREADS)
                self._tokenizer = tok
            return self._tokenizer

    def _new_tokenizer(self) -> Any:
        from tokenizers import Tokenizer, normalizers

        tok = Tokenizer.from_file(str(self.spec.transformer_dir / "tokenizer.json"))
        tok.no_padding()  # padding is done here, per batch, to the longest text
        tok.no_truncation()
        if self.spec.do_lower_case:  # as sentence-transformers: a Lowercase normalizer in front
            current: Any = tok.normalizer
            listed: Any = current  # a normalizers.Sequence iterates over its parts
            parts = (
                list(listed) if isinstance(current, normalizers.Sequence) else [current] if current else []
            )
            if not any(isinstance(n, normalizers.Lowercase) for n in parts):
                tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), *parts])
        return tok

    def _plain(self) -> Any:
        """A tokenizer without truncation, for the offsets of every token of a whole text."""
        with self._lock:
            if self._plain_tokenizer is None:
                self._plain_tokenizer = self._new_tokenizer()
            return self._plain_tokenizer

    def token_starts(self, text: str) -> np.ndarray:
        """Character offsets where the model's tokens start (specials excluded)."""
        enc = self._plain().encode(text, add_special_tokens=False)
        return np.fromiter((s for s, e in enc.offsets if e > s), dtype=np.int64)

    def _forward(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings (n, longest, hidden) and the attention mask (n, longest) of ``texts``."""
        tok = self.load()
        encodings = [tok.encode(texts[0])] if len(texts) == 1 else tok.encode_batch(list(texts))
        longest = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), longest), dtype=np.int64)  # padding: masked, any id will do
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            types[row, : len(e.ids)] = e.type_ids
            mask[row, : len(e.ids)] = 1
        return self.encoder.hidden_states(ids, mask, types), mask

    def _pool(self, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sentence vectors as the Pooling module computes them, then L2-normalised."""
        m = mask[:, :, None].astype(np.float32)
        parts = []
        for mode in self.spec.pooling:
            if mode == "cls":
                parts.append(tokens[:, 0])
            elif mode == "max":
                parts.append(np.where(m > 0, tokens, -np.inf).max(axis=1).astype(np.float32))
            else:
                total = (tokens * m).sum(axis=1)
                count = np.maximum(m.sum(axis=1), 1e-9)
                parts.append(total / (count if mode == "mean" else np.sqrt(count)))
        vecs = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        # qa always normalises (cosine = inner product), whether or not a Normalize module is listed
        norms = np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return (vecs / norms).astype(np.float32)

    def _batches(self, texts: Sequence[str]) -> list[np.ndarray]:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        return [order[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Normalised float32 vectors, shape (len(texts), dimension), in input order.

        Texts are grouped by length so padding stays small; ``progress(done, total)`` after
        each group.
        """
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        done = 0
        for idx in self._batches(texts):
            tokens, mask = self._forward([texts[j] for j in idx])
            out[idx] = self._pool(tokens, mask)
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
        return out

    def encode_chunks(
        self,
        texts: Sequence[str],
        units: Sequence[Sequence[tuple[int, int]]],
        progress: Progress | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors and per-chunk unit vectors, as ``SentenceTransformerEmbedder.encode_chunks``."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        unit_out: list[np.ndarray] = [np.zeros((0, self.dimension), np.float16)] * len(texts)
        done = 0
        for idx in self._batches(texts):
            batch = [texts[j] for j in idx]
            tokens, mask = self._forward(batch)
            out[idx] = self._pool(tokens, mask)
            for row, j in enumerate(idx):
                enc = self._plain().encode(texts[j], add_special_tokens=False)
                starts = np.fromiter((s for s, _ in enc.offsets), dtype=np.int64, count=len(enc.offsets))
                pooled = _pool_units(tokens[row, : int(mask[row].sum())], starts, units[j])
                unit_out[j] = pooled.astype(np.float16)  # stored as float16, as the build's
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
        return out, unit_out


def _special_tokens(tokenizer_json: Path) -> int:
    """Special tokens the tokenizer adds to one text ([CLS] and [SEP]: 2), from its JSON.

    Read from the file rather than a loaded tokenizer: ``qa info`` needs ``max_tokens`` but
    not the 0.05 s a tokenizer takes to build.
    """
    post = _json(tokenizer_json)
    post = post.get("post_processor") if isinstance(post, dict) else None
    if isinstance(post, dict) and post.get("type") == "TemplateProcessing":
        return sum(
            1 for piece in post.get("single", []) if isinstance(piece, dict) and "SpecialToken" in piece
        )
    if isinstance(post, dict) and post.get("type") in ("BertProcessing", "RobertaProcessing"):
        return 2
    raise UnsupportedModelError(
        f"{tokenizer_json}: post-processor {post and post.get('type')!r} is not supported"
    )


# One BLAS thread for questions, whatever Settings.threads says. Measured on this 2-core
# machine (benchmarks/latency.py, 200 SQuAD questions of ~13 tokens, load ~4): the forward pass
# took 13.7 ms p50 / 24.5 ms p95 on one OpenBLAS thread and 140 / 488 ms on two (a 13-row matrix
# product is too small to split; the second thread mostly waits for a busy core), and with BLAS
# following QA_THREADS=2, ask() p95 at 100k chunks was 1128 ms against torch's 613 ms.
BLAS_THREADS = 1
_blas_threads: int | None = None


def limit_blas_threads(threads: int) -> None:
    """Cap the process's BLAS libraries (numpy's OpenBLAS, FAISS's) at ``threads``, through
    threadpoolctl. Process-wide, like ``torch.set_num_threads`` and FAISS's OpenMP setting."""
    global _blas_threads
    if _blas_threads != threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        _blas_threads = threads
