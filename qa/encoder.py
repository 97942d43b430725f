"""A BERT encoder in plain numpy: the transformer forward pass without torch.

``BertEncoder.from_folder(path)`` reads a Hugging Face ``config.json`` and ``model.safetensors``
(BERT tensor names, with or without a ``bert.`` prefix; extra tensors such as a pooler or a
classification head may sit next to the encoder's and are kept in ``tensors``) and
``hidden_states(input_ids, attention_mask, token_type_ids)`` returns the last hidden states,
the same numbers as ``transformers.BertModel(...).last_hidden_state`` in float32 up to
rounding (checked against sentence-transformers in ``tests/test_query_encoder.py``).

Weights are memory-mapped, not read: a question touches only the embedding rows of its own
tokens, so the 47 MB word-embedding table of MiniLM stays on disk and in the page cache,
shared between processes. Float16 and bfloat16 files are accepted and widened to float32
(that copy costs memory; float32 files cost none).

Why: importing torch and sentence-transformers takes seconds; a question needs one forward
pass over ~20 tokens, which numpy's BLAS does as fast (benchmarks/latency.py).

Non-goals: training, other architectures (RoBERTa, relative positions, ...), GPUs. An
unsupported ``config.json`` raises ``UnsupportedModelError`` naming what is missing.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ModelLoadError, UnsupportedModelError

_HEADER_LIMIT = 100 * 2**20  # safetensors caps its JSON header at 100 MB
_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
}
_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face BERT ``config.json`` the forward pass uses."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config.json") -> BertConfig:
        """Validate a parsed ``config.json``.

        Raises:
            UnsupportedModelError: not a BERT this encoder implements (the message says why).
        """
        model_type = raw.get("model_type")
        if model_type != "bert":
            raise UnsupportedModelError(f"{source}: model_type {model_type!r} is not 'bert'")
        position = raw.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise UnsupportedModelError(f"{source}: position_embedding_type {position!r} is not 'absolute'")
        act = raw.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise UnsupportedModelError(
                f"{source}: hidden_act {act!r} is not one of {', '.join(_ACTIVATIONS)}"
            )
        if raw.get("is_decoder") or raw.get("add_cross_attention"):
            raise UnsupportedModelError(f"{source}: a decoder / cross-attention BERT is not supported")
        try:
            config = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                max_position_embeddings=int(raw["max_position_embeddings"]),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                hidden_act=act,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UnsupportedModelError(f"{source}: missing or invalid field {exc}") from exc
        if config.hidden_size % config.num_attention_heads:
            raise UnsupportedModelError(f"{source}: hidden_size is not a multiple of num_attention_heads")
        return config


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a read-only numpy array, memory-mapped.

    The format is open: 8 bytes little-endian header length, a JSON header mapping names to
    dtype, shape and byte offsets, then the raw little-endian data. F32 and I64 tensors are
    views of the mapping (no copy); F16 and BF16 tensors are widened to float32 copies.

    Raises:
        ModelLoadError: unreadable or malformed file (names it).
        UnsupportedModelError: a dtype other than F32, F16, BF16, I64.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= min(_HEADER_LIMIT, size - 8):
                raise ModelLoadError(f"{path}: not a safetensors file (bad header length)")
            header = json.loads(fh.read(n))
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"{path}: not a safetensors file ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: not a safetensors file (header is not an object)")
    base = 8 + n
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape = info["dtype"], [int(d) for d in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: bad header entry for {name!r}") from exc
        dtype = _DTYPES.get(dtype_name)
        if dtype is None:
            raise UnsupportedModelError(f"{path}: tensor {name!r} has dtype {dtype_name}, not F32/F16/BF16")
        count = math.prod(shape)
        if begin < 0 or end != begin + count * dtype.itemsize or base + end > size:
            raise ModelLoadError(f"{path}: tensor {name!r} lies outside the file (truncated?)")
        arr = np.frombuffer(mapped, dtype=dtype, count=count, offset=base + begin).reshape(shape)
        if dtype_name == "F16":
            arr = arr.astype(np.float32)
        elif dtype_name == "BF16":  # the top 16 bits of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr
    return tensors


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU with the exact erf, in place: ``x * (1 + erf(x / sqrt 2)) / 2`` (BERT's "gelu")."""
    t = x * np.float32(1 / math.sqrt(2))
    erf = _erf(t)
    erf += 1.0
    erf *= 0.5
    x *= erf
    return x


def _erf(x: np.ndarray) -> np.ndarray:
    """erf for float32 arrays, a new array.

    numpy has no erf and SciPy costs a quarter second to import. This is Eigen's float32
    rational approximation (the one behind TensorFlow's and XLA's erf): an odd degree-13 over
    an even degree-8 polynomial on [-4, 4], where erf is +-1 in float32 beyond; error within a
    few float32 ulps (tests/test_encoder.py compares it with math.erf).
    """
    x = np.clip(x, -4.0, 4.0)
    x2 = x * x
    p = x2 * np.float32(-2.72614225801306e-10)
    for c in (2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03):  # fmt: skip
        p += np.float32(c)
        p *= x2
    p += np.float32(-1.60960333262415e-02)
    p *= x
    q = x2 * np.float32(-1.45660718464996e-05)
    for c in (-2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03):
        q += np.float32(c)
        q *= x2
    q += np.float32(-1.42647390514189e-02)
    p /= q
    return p


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis (population variance, as torch)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(np.square(centred), axis=-1, keepdims=True)
    centred /= np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weight.T + bias``; ``weight.T`` of a C-ordered (out, in) matrix goes to BLAS as is."""
    y = x @ weight.T
    y += bias
    return y


@dataclass(frozen=True)
class _Layer:
    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln_w: np.ndarray
    attn_ln_b: np.ndarray
    inter_w: np.ndarray
    inter_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    out_ln_w: np.ndarray
    out_ln_b: np.ndarray


_LAYER_NAMES = {
    "q_w": "attention.self.query.weight",
    "q_b": "attention.self.query.bias",
    "k_w": "attention.self.key.weight",
    "k_b": "attention.self.key.bias",
    "v_w": "attention.self.value.weight",
    "v_b": "attention.self.value.bias",
    "attn_out_w": "attention.output.dense.weight",
    "attn_out_b": "attention.output.dense.bias",
    "attn_ln_w": "attention.output.LayerNorm.weight",
    "attn_ln_b": "attention.output.LayerNorm.bias",
    "inter_w": "intermediate.dense.weight",
    "inter_b": "intermediate.dense.bias",
    "out_w": "output.dense.weight",
    "out_b": "output.dense.bias",
    "out_ln_w": "output.LayerNorm.weight",
    "out_ln_b": "output.LayerNorm.bias",
}


class BertEncoder:
    """A BERT encoder (embeddings + transformer layers, no pooler) on numpy float32.

    Thread-safe: the weights are read-only and a forward pass shares no state, so several
    threads may encode at once (BLAS releases the GIL).
    """

    def __init__(
        self, config: BertConfig, tensors: Mapping[str, np.ndarray], source: str = "weights"
    ) -> None:
        """Pick the encoder's tensors out of ``tensors`` (names with or without a prefix).

        Raises:
            UnsupportedModelError: a tensor is missing or has the wrong shape for ``config``.
        """
        self.config = config
        self.tensors = dict(tensors)
        self.prefix = _prefix(self.tensors, source)
        h, i = config.hidden_size, config.intermediate_size

        def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
            arr = self.tensors.get(self.prefix + name)
            if arr is None:
                raise UnsupportedModelError(f"{source}: tensor {self.prefix + name} is missing")
            if tuple(arr.shape) != shape or arr.dtype != np.float32:
                raise UnsupportedModelError(
                    f"{source}: tensor {self.prefix + name} is {arr.dtype}{list(arr.shape)}, "
                    f"expected float32{list(shape)} from config.json"
                )
            return arr

        self.word = get("embeddings.word_embeddings.weight", (config.vocab_size, h))
        self.position = get("embeddings.position_embeddings.weight", (config.max_position_embeddings, h))
        self.token_type = get("embeddings.token_type_embeddings.weight", (config.type_vocab_size, h))
        self.emb_ln = (get("embeddings.LayerNorm.weight", (h,)), get("embeddings.LayerNorm.bias", (h,)))
        shapes = {"inter_w": (i, h), "inter_b": (i,), "out_w": (h, i)}
        shapes.update({f: (h, h) for f in ("q_w", "k_w", "v_w", "attn_out_w")})
        self.layers = [
            _Layer(
                **{
                    f: get(f"encoder.layer.{n}.{name}", shapes.get(f, (h,)))
                    for f, name in _LAYER_NAMES.items()
                }
            )
            for n in range(config.num_hidden_layers)
        ]

    @classmethod
    def from_folder(cls, path: Path) -> BertEncoder:
        """Load ``path/config.json`` and ``path/model.safetensors``.

        Raises:
            ModelLoadError: a file is missing or unreadable.
            UnsupportedModelError: the configuration or the weights are not a BERT encoder.
        """
        config_file, weights = path / "config.json", path / "model.safetensors"
        for required in (config_file, weights):
            if not required.is_file():
                raise UnsupportedModelError(f"{required} is missing (the numpy encoder needs safetensors)")
        try:
            raw = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {config_file}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{config_file}: not a JSON object")
        return cls(BertConfig.from_dict(raw, str(config_file)), read_safetensors(weights), str(weights))

    def hidden_states(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Last hidden states, float32 (batch, tokens, hidden).

        Args:
            input_ids: int array (batch, tokens) of vocabulary ids.
            attention_mask: 1 for real tokens, 0 for padding (default: all ones).
            token_type_ids: segment ids, e.g. 0 for the question and 1 for the passage of a
                cross-encoder pair (default: all zeros).

        Raises:
            ValueError: shapes disagree, a sequence is longer than the position table, or an
                id is outside the vocabulary / type table.
        """
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be 2-D (batch, tokens), got shape {ids.shape}")
        batch, length = ids.shape
        cfg = self.config
        if length > cfg.max_position_embeddings:
            raise ValueError(f"{length} tokens exceed the model's {cfg.max_position_embeddings} positions")
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if types.shape != ids.shape or mask.shape != ids.shape:
            raise ValueError("input_ids, attention_mask and token_type_ids must have the same shape")
        if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {cfg.vocab_size})")
        if types.size and (types.min() < 0 or types.max() >= cfg.type_vocab_size):
            raise ValueError(f"token_type_ids must lie in [0, {cfg.type_vocab_size})")

        x = self.word[ids]  # fancy indexing copies only the rows used
        x += self.position[:length]
        x += self.token_type[types]
        x = layer_norm(x, *self.emb_ln, cfg.layer_norm_eps).reshape(batch * length, cfg.hidden_size)
        # Additive mask as transformers builds it: padded keys get the most negative float32.
        bias = None
        if not mask.all():
            bias = np.where(mask[:, None, None, :] > 0, np.float32(0), np.finfo(np.float32).min)
        for layer in self.layers:
            x = self._layer(layer, x, batch, length, bias)
        return x.reshape(batch, length, cfg.hidden_size)

    def _layer(
        self, p: _Layer, x: np.ndarray, batch: int, length: int, bias: np.ndarray | None
    ) -> np.ndarray:
        cfg = self.config
        heads, size = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads

        def split(t: np.ndarray) -> np.ndarray:  # (B*T, H) -> (B, heads, T, size)
            return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        q = split(_linear(x, p.q_w, p.q_b))
        k = split(_linear(x, p.k_w, p.k_b))
        v = split(_linear(x, p.v_w, p.v_b))
        scores = q @ k.transpose(0, 1, 3, 2)
        scores *= np.float32(1 / math.sqrt(size))
        if bias is not None:
            scores += bias
        scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, cfg.hidden_size)
        attn = _linear(context, p.attn_out_w, p.attn_out_b)
        attn += x
        x = layer_norm(attn, p.attn_ln_w, p.attn_ln_b, cfg.layer_norm_eps)
        out = _linear(gelu(_linear(x, p.inter_w, p.inter_b)), p.out_w, p.out_b)
        out += x
        return layer_norm(out, p.out_ln_w, p.out_ln_b, cfg.layer_norm_eps)


def _prefix(tensors: Mapping[str, np.ndarray], source: str) -> str:
    """The name prefix of the encoder's tensors: "" or e.g. "bert." (a model with a head)."""
    suffix = "embeddings.word_embeddings.weight"
    found = sorted(name[: -len(suffix)] for name in tensors if name.endswith(suffix))
    if not found:
        raise UnsupportedModelError(f"{source}: no {suffix}: not a BERT checkpoint")
    if len(found) > 1:
        raise UnsupportedModelError(f"{source}: several BERT encoders in one file ({', '.join(found)})")
    return found[0]
