"""Unit tests of the numpy BERT (qa.encoder), the model-folder reader (qa.query_embedding) and
the fingerprint cache (qa.fingerprints), on tiny random models: no torch, no real weights.

Equality with sentence-transformers on the real model is in tests/test_query_encoder.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa import fingerprints
from qa.encoder import BertConfig, BertEncoder, _erf, gelu, read_safetensors
from qa.errors import ModelLoadError, UnsupportedModelError
from qa.query_embedding import NumpyEmbedder, read_spec

TINY = {
    "model_type": "bert",
    "vocab_size": 50,
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 16,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def write_safetensors(
    path: Path, tensors: dict[str, np.ndarray], dtypes: dict[str, str] | None = None
) -> None:
    """A safetensors file written by hand (the format is 8 bytes + JSON header + raw data)."""
    dtypes = dtypes or {}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        kind = dtypes.get(name, {"float32": "F32", "int64": "I64", "float16": "F16"}[arr.dtype.name])
        if kind == "BF16":
            raw = (np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def tiny_weights(prefix: str = "", seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, i, c = TINY["hidden_size"], TINY["intermediate_size"], TINY

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": r(c["vocab_size"], h),
        "embeddings.position_embeddings.weight": r(c["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": r(2, h),
        "embeddings.LayerNorm.weight": 1 + r(h),
        "embeddings.LayerNorm.bias": r(h),
    }
    for n in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            w[p + f"attention.self.{name}.weight"], w[p + f"attention.self.{name}.bias"] = r(h, h), r(h)
        w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"] = r(h, h), r(h)
        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"] = 1 + r(h), r(h)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = r(i, h), r(i)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = r(h, i), r(h)
        w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"] = 1 + r(h), r(h)
    return {prefix + k: v for k, v in w.items()}


def reference_bert(w: dict[str, np.ndarray], ids: list[int], types: list[int] | None = None) -> np.ndarray:
    """BERT for one unpadded sequence written out term by term in float64: an independent check."""
    h, heads = TINY["hidden_size"], TINY["num_attention_heads"]
    size = h // heads
    g = {k: v.astype(np.float64) for k, v in w.items()}

    def ln(x: np.ndarray, name: str) -> np.ndarray:
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * g[name + ".weight"] + g[name + ".bias"]

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        return x @ g[name + ".weight"].T + g[name + ".bias"]

    types = types or [0] * len(ids)
    x = g["embeddings.word_embeddings.weight"][ids] + g["embeddings.position_embeddings.weight"][: len(ids)]
    x = ln(x + g["embeddings.token_type_embeddings.weight"][types], "embeddings.LayerNorm")
    for n in range(TINY["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        q, k, v = (lin(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
        ctx = np.zeros_like(x)
        for head in range(heads):
            sl = slice(head * size, (head + 1) * size)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(size)
            e = np.exp(s - s.max(-1, keepdims=True))
            ctx[:, sl] = (e / e.sum(-1, keepdims=True)) @ v[:, sl]
        x = ln(lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        mid = lin(x, p + "intermediate.dense")
        mid = mid * 0.5 * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = ln(lin(mid, p + "output.dense") + x, p + "output.LayerNorm")
    return x


def make_folder(path: Path, prefix: str = "", config: dict[str, object] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config or TINY))
    write_safetensors(path / "model.safetensors", tiny_weights(prefix))
    return path


# -- erf, GELU --------------------------------------------------------------------------------


def test_erf_matches_math_erf() -> None:
    xs = np.linspace(-7, 7, 20001, dtype=np.float32)
    exact = np.array([math.erf(float(v)) for v in xs])
    assert np.abs(_erf(xs).astype(np.float64) - exact).max() < 1e-6
    y = gelu(np.array([-3.0, -1.0, 0.0, 0.5, 2.0], dtype=np.float32))
    expect = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in (-3.0, -1.0, 0.0, 0.5, 2.0)]
    assert np.allclose(y, expect, atol=1e-6)


# -- safetensors ------------------------------------------------------------------------------


def test_safetensors_f32_is_memory_mapped_and_other_dtypes_widen(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([[1.5, -2.25]], dtype=np.float32)  # exact in bfloat16 and float16
    ids = np.arange(5, dtype=np.int64)
    write_safetensors(tmp_path / "m.safetensors", {"a": a, "h": b.astype(np.float16), "bf": b, "ids": ids},
                      {"bf": "BF16"})  # fmt: skip
    t = read_safetensors(tmp_path / "m.safetensors")
    assert np.array_equal(t["a"], a) and not t["a"].flags.owndata and not t["a"].flags.writeable
    assert t["h"].dtype == np.float32 and np.array_equal(t["h"], b)
    assert t["bf"].dtype == np.float32 and np.array_equal(t["bf"], b)
    assert np.array_equal(t["ids"], ids)


@pytest.mark.parametrize("damage", ["truncated", "header_length", "not_json", "bad_offsets"])
def test_safetensors_damage_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": np.ones((4, 4), np.float32)})
    data = path.read_bytes()
    if damage == "truncated":
        data = data[:-10]
    elif damage == "header_length":
        data = (10**12).to_bytes(8, "little") + data[8:]
    elif damage == "not_json":
        data = data[:8] + b"{" * (len(data) - 8)
    else:
        data = data.replace(b'"data_offsets": [0, 64]', b'"data_offsets": [0, 60]')
    path.write_bytes(data)
    with pytest.raises(ModelLoadError, match=r"m\.safetensors"):
        read_safetensors(path)


def test_safetensors_unknown_dtype_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": np.ones((2, 2), np.float32)})
    path.write_bytes(path.read_bytes().replace(b'"F32"', b'"F64"'))
    with pytest.raises(UnsupportedModelError, match="F64"):
        read_safetensors(path)


# -- the forward pass ---------------------------------------------------------------------------


def test_forward_matches_a_float64_reference(tmp_path: Path) -> None:
    enc = BertEncoder.from_folder(make_folder(tmp_path))
    ids, types = [2, 17, 5, 44, 3], [0, 0, 1, 1, 1]
    out = enc.hidden_states(np.array([ids]), np.ones((1, 5), np.int64), np.array([types]))
    assert out.dtype == np.float32 and out.shape == (1, 5, 8)
    assert np.abs(out[0] - reference_bert(tiny_weights(), ids, types)).max() < 1e-5
    # token types matter: a cross-encoder's segment ids are not ignored
    assert np.abs(enc.hidden_states(np.array([ids]))[0] - out[0]).max() > 1e-3


def test_padding_does_not_change_real_tokens(tmp_path: Path) -> None:
    enc = BertEncoder.from_folder(make_folder(tmp_path))
    long, short = [2, 9, 11, 13, 3], [2, 30, 3]
    ids = np.array([long, [*short, 0, 0]])
    mask = np.array([[1] * 5, [1, 1, 1, 0, 0]])
    batch = enc.hidden_states(ids, mask)
    assert np.abs(batch[1, :3] - enc.hidden_states(np.array([short]))[0]).max() < 1e-5
    assert np.abs(batch[0] - enc.hidden_states(np.array([long]))[0]).max() < 1e-5


def test_prefixed_checkpoint_with_a_head_loads(tmp_path: Path) -> None:
    plain = BertEncoder.from_folder(make_folder(tmp_path / "plain"))
    folder = make_folder(tmp_path / "head", prefix="bert.")
    weights = read_safetensors(folder / "model.safetensors")
    head = {"classifier.weight": np.ones((1, 8), np.float32), "classifier.bias": np.zeros(1, np.float32)}
    write_safetensors(folder / "model.safetensors", {**{k: np.array(v) for k, v in weights.items()}, **head})
    enc = BertEncoder.from_folder(folder)
    assert enc.prefix == "bert." and enc.tensors["classifier.weight"].shape == (1, 8)
    ids = np.array([[2, 7, 3]])
    assert np.array_equal(enc.hidden_states(ids), plain.hidden_states(ids))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "roberta"}, "model_type 'roberta'"),
        ({"hidden_act": "silu"}, "hidden_act 'silu'"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"is_decoder": True}, "decoder"),
        ({"num_hidden_layers": 3}, "encoder.layer.2"),
        ({"intermediate_size": 32}, "expected float32"),
    ],
)
def test_unsupported_configs_are_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    folder = make_folder(tmp_path, config={**TINY, **change})
    with pytest.raises(UnsupportedModelError, match=message):
        BertEncoder.from_folder(folder)


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    enc = BertEncoder.from_folder(make_folder(tmp_path))
    with pytest.raises(ValueError, match="2-D"):
        enc.hidden_states(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"lie in \[0, 50\)"):
        enc.hidden_states(np.array([[1, 50]]))
    with pytest.raises(ValueError, match="positions"):
        enc.hidden_states(np.ones((1, 17), np.int64))
    with pytest.raises(ValueError, match="same shape"):
        enc.hidden_states(np.ones((1, 3), np.int64), np.ones((1, 2), np.int64))
    assert BertConfig.from_dict(TINY).hidden_size == 8


# -- sentence-transformers folders ------------------------------------------------------------


def st_folder(
    tmp_path: Path, modules: list[str] | None = None, pooling: dict[str, object] | None = None
) -> Path:
    """A sentence-transformers layout around the tiny BERT (no tokenizer: read_spec only)."""
    folder = make_folder(tmp_path / "st")
    kinds = modules or ["Transformer", "Pooling", "Normalize"]
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    (folder / "modules.json").write_text(json.dumps(
        [{"idx": i, "name": str(i), "path": paths[k], "type": f"sentence_transformers.models.{k}"}
         for i, k in enumerate(kinds)]))  # fmt: skip
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 12, "do_lower_case": false}')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        pooling or {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True}))  # fmt: skip
    return folder


def test_spec_reads_pooling_and_length(tmp_path: Path) -> None:
    spec = read_spec(st_folder(tmp_path))
    assert (spec.pooling, spec.max_seq_length, spec.normalize, spec.dimension) == (("mean",), 12, True, 8)
    spec = read_spec(
        st_folder(tmp_path / "b", pooling={"embedding_dimension": 8, "pooling_mode": ["cls", "max"]})
    )
    assert spec.pooling == ("cls", "max") and spec.dimension == 16


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dense", "Transformer -> Pooling -> Dense"),
        ("weightedmean", "weightedmean"),
        ("prompt", "default prompt"),
        ("query_length", "query_length"),
        ("pooler_output", "pooler_output"),
        ("bad_type", "unexpected"),
        ("no_tokenizer", "tokenizer.json"),
    ],
)
def test_folders_it_does_not_implement_are_refused(tmp_path: Path, kind: str, message: str) -> None:
    if kind == "dense":
        folder = st_folder(tmp_path, modules=["Transformer", "Pooling", "Dense"])
    elif kind == "weightedmean":
        folder = st_folder(tmp_path, pooling={"word_embedding_dimension": 8, "pooling_mode": "weightedmean"})
    else:
        folder = st_folder(tmp_path)
    if kind == "prompt":
        (folder / "config_sentence_transformers.json").write_text(
            '{"prompts": {"query": "query: "}, "default_prompt_name": "query"}'
        )
    if kind == "query_length":
        (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 12, "query_length": 8}')
    if kind == "pooler_output":
        modality = {"text": {"method": "forward", "method_output_name": "pooler_output"}}
        (folder / "sentence_bert_config.json").write_text(json.dumps({"modality_config": modality}))
    if kind == "bad_type":
        (folder / "sentence_bert_config.json").write_text('{"max_seq_length": "long"}')
    with pytest.raises(UnsupportedModelError, match=message):
        NumpyEmbedder(folder)


# -- fingerprint cache ------------------------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprints, "RACY_NS", 0)  # the files below were just written
    return tmp_path / "cache"


def _files(root: Path) -> list[tuple[str, Path]]:
    return [(p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*")) if p.is_file()]


def test_fingerprint_cache_hits_until_a_file_changes(tmp_path: Path, cache_home: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "weights.bin").write_bytes(b"a" * 100)
    calls: list[int] = []

    def compute(files: fingerprints.Files) -> str:
        calls.append(1)
        return f"digest-{len(calls)}"

    assert fingerprints.cached(root, _files(root), compute) == "digest-1"
    assert fingerprints.cached(root, _files(root), compute) == "digest-1" and len(calls) == 1
    assert (cache_home / "qa" / "model-fingerprints.json").is_file()
    (root / "weights.bin").write_bytes(b"b" * 100)  # same size, new content: ctime moves
    stat = (root / "weights.bin").stat()
    os.utime(root / "weights.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprints.cached(root, _files(root), compute) == "digest-2"
    (root / "extra.json").write_text("{}")
    assert fingerprints.cached(root, _files(root), compute) == "digest-3"
    shutil.copytree(root, tmp_path / "copy")  # another folder: its own entry
    assert fingerprints.cached(tmp_path / "copy", _files(tmp_path / "copy"), compute) == "digest-4"


def test_fingerprint_cache_tolerates_a_bad_or_unwritable_cache(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "w").write_bytes(b"x")
    (cache_home / "qa").mkdir(parents=True)
    (cache_home / "qa" / "model-fingerprints.json").write_text("not json {")
    assert fingerprints.cached(root, _files(root), lambda f: "d1") == "d1"
    assert fingerprints.cached(root, _files(root), lambda f: "other") == "d1"  # rewritten, then hit
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "w" / "not-a-dir"))
    assert fingerprints.cached(root, _files(root), lambda f: "d2") == "d2"


def test_recently_written_files_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "model"
    root.mkdir()
    (root / "w").write_bytes(b"x")
    assert fingerprints.cached(root, _files(root), lambda f: "d1") == "d1"
    assert fingerprints.cached(root, _files(root), lambda f: "d2") == "d2"
    assert not (tmp_path / "cache" / "qa" / "model-fingerprints.json").exists()


def tokenized_folder(tmp_path: Path, pooling: dict[str, object], lower: bool = False) -> Path:
    """The tiny BERT with a word-level tokenizer.json ([CLS] $A [SEP]), as sentence-transformers saves it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    folder = st_folder(tmp_path, pooling=pooling)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate("abcdefghij")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.enable_truncation(128)  # as in MiniLM's tokenizer.json: must be overridden, not used
    tok.save(str(folder / "tokenizer.json"))
    if lower:
        (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 12, "do_lower_case": true}')
    return folder


@pytest.mark.parametrize("mode", ["mean", "cls", "max", "mean_sqrt_len_tokens"])
def test_numpy_embedder_pools_as_configured(tmp_path: Path, mode: str) -> None:
    folder = tokenized_folder(tmp_path, {"embedding_dimension": 8, "pooling_mode": mode})
    emb = NumpyEmbedder(folder)
    assert emb.max_tokens == 10 and emb.dimension == 8
    texts = ["a b c", "j", "d e f g h i j a b c d e f g h"]  # the last is cut at 12 tokens
    vecs = emb.encode(texts)
    enc = BertEncoder.from_folder(folder)
    for text, vec in zip(texts, vecs, strict=True):
        words = text.split()[:10]
        ids = np.array([[2, *("abcdefghij".index(w) + 4 for w in words), 3]])
        tokens = enc.hidden_states(ids)[0]
        pooled = {
            "mean": tokens.mean(0),
            "cls": tokens[0],
            "max": tokens.max(0),
            "mean_sqrt_len_tokens": tokens.sum(0) / math.sqrt(len(tokens)),
        }[mode]
        assert np.abs(vec - pooled / np.linalg.norm(pooled)).max() < 1e-6


def test_numpy_embedder_lowercases_and_pools_units(tmp_path: Path) -> None:
    pooling = {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True}
    lower = NumpyEmbedder(tokenized_folder(tmp_path / "lower", pooling, lower=True))
    plain = NumpyEmbedder(tokenized_folder(tmp_path / "plain", pooling))
    assert np.allclose(lower.encode(["A B"]), plain.encode(["a b"]), atol=1e-6)
    assert not np.allclose(plain.encode(["A B"]), plain.encode(["a b"]), atol=1e-3)  # [UNK]s
    text = "a b c d"
    chunks, units = plain.encode_chunks([text, "e f"], [[(0, 3), (4, 7)], [(0, 3)]])
    assert np.allclose(chunks, plain.encode([text, "e f"]), atol=1e-6)
    tokens = plain.encoder.hidden_states(np.array([[2, 4, 5, 6, 7, 3]]))[0]
    first = tokens[1:3].mean(0)
    # unit vectors are stored as float16, as the build's
    assert units[0].shape == (2, 8) and units[0].dtype == np.float16
    assert np.allclose(units[0][0], first / np.linalg.norm(first), atol=1e-3)
    assert list(plain.token_starts(text)) == [0, 2, 4, 6]


def test_query_embedder_factory_falls_back_with_the_reason(tmp_path: Path) -> None:
    from qa.embedding import SentenceTransformerEmbedder, get_query_embedder
    from qa.settings import Settings

    pooling = {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True}
    good = tokenized_folder(tmp_path / "good", pooling)
    fast = get_query_embedder(Settings(model=good))
    assert isinstance(fast, NumpyEmbedder) and fast is get_query_embedder(Settings(model=good))
    assert "numpy" in fast.note
    dense = st_folder(tmp_path / "dense", modules=["Transformer", "Pooling", "Dense"])
    slow = get_query_embedder(Settings(model=dense))  # built lazily: nothing imports torch here
    assert isinstance(slow, SentenceTransformerEmbedder)
    assert "does not implement this model" in slow.note and "Dense" in slow.note
    forced = get_query_embedder(Settings(model=good, query_encoder="sentence-transformers"))
    assert isinstance(forced, SentenceTransformerEmbedder) and "QA_QUERY_ENCODER" in forced.note
    with pytest.raises(UnsupportedModelError, match="Dense"):
        get_query_embedder(Settings(model=dense, query_encoder="numpy"))
