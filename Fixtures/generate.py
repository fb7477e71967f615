#!/usr/bin/env python3
"""Generates every committed fixture of swiftcompress, deterministically.

Valid checkpoints are written with the independent reference writer (the Python
`safetensors` package, numpy and ml_dtypes), so the Swift reader is checked against
someone else's writer. Malformed files cannot be produced by a correct writer, so
they are built byte by byte from a valid file, each breaking exactly one rule.

Run from the repository root: `make fixtures` (or `.build/venv/bin/python Fixtures/generate.py`).
Running it twice gives byte-identical files; Fixtures/SHA256SUMS records them.
"""

import hashlib
import json
import os
import shutil
import struct
import sys

import ml_dtypes
import numpy as np
import safetensors
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.abspath(__file__))
METADATA = {"format": "pt"}


# ---------------------------------------------------------------- helpers

def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def pack_f4(codes):
    """Packs 4-bit codes two per byte, element 2k in the low nibble of byte k."""
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    assert codes.size % 2 == 0
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)


def save_with_f4(path, arrays, f4_tensors, metadata=METADATA):
    """Writes numpy/ml_dtypes arrays plus packed F4 tensors {name: (logical_shape, packed_bytes)}
    with the reference serializer. TensorSpec takes the storage shape of a packed F4
    tensor (last dimension halved) and records the logical one."""
    keep = []
    specs = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        keep.append(array)
        specs[name] = TensorSpec(dtype=array.dtype.name, shape=list(array.shape),
                                 data_ptr=array.ctypes.data, data_len=array.nbytes)
    for name, (shape, packed) in f4_tensors.items():
        packed = np.ascontiguousarray(packed)
        keep.append(packed)
        storage = list(shape[:-1]) + [shape[-1] // 2]
        specs[name] = TensorSpec(dtype="float4_e2m1fn_x2", shape=storage,
                                 data_ptr=packed.ctypes.data, data_len=packed.nbytes)
    serialize_file(specs, path, metadata=metadata)
    del keep


def heavy_tailed(rng, shape, scale=0.02, outlier_columns=2):
    """Student-t (df=4) weights with a few input channels scaled up, as in real LLMs."""
    w = rng.standard_t(4, size=shape).astype(np.float32) * np.float32(scale)
    if len(shape) == 2 and outlier_columns:
        cols = rng.choice(shape[1], size=outlier_columns, replace=False)
        w[:, cols] *= np.float32(8.0)
    return w


def norm_weight(rng, n):
    return (1.0 + 0.05 * rng.standard_normal(n)).astype(np.float32)


# ---------------------------------------------------------------- tiny Llama

LLAMA = dict(hidden=128, intermediate=384, layers=2, heads=4, kv_heads=2, head_dim=32, vocab=512)


def llama_weights():
    rng = np.random.default_rng(20261122)
    h, i, v = LLAMA["hidden"], LLAMA["intermediate"], LLAMA["vocab"]
    kv = LLAMA["kv_heads"] * LLAMA["head_dim"]
    w = {"model.embed_tokens.weight": heavy_tailed(rng, (v, h), scale=0.02, outlier_columns=0)}
    for layer in range(LLAMA["layers"]):
        p = f"model.layers.{layer}."
        w[p + "self_attn.q_proj.weight"] = heavy_tailed(rng, (h, h))
        w[p + "self_attn.k_proj.weight"] = heavy_tailed(rng, (kv, h))
        w[p + "self_attn.v_proj.weight"] = heavy_tailed(rng, (kv, h))
        w[p + "self_attn.o_proj.weight"] = heavy_tailed(rng, (h, h))
        w[p + "mlp.gate_proj.weight"] = heavy_tailed(rng, (i, h))
        w[p + "mlp.up_proj.weight"] = heavy_tailed(rng, (i, h))
        w[p + "mlp.down_proj.weight"] = heavy_tailed(rng, (h, i))
        w[p + "input_layernorm.weight"] = norm_weight(rng, h)
        w[p + "post_attention_layernorm.weight"] = norm_weight(rng, h)
    w["model.norm.weight"] = norm_weight(rng, h)
    w["lm_head.weight"] = heavy_tailed(rng, (v, h), outlier_columns=0)
    return w


def llama_config(torch_dtype):
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": LLAMA["head_dim"],
        "hidden_act": "silu",
        "hidden_size": LLAMA["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": LLAMA["intermediate"],
        "max_position_embeddings": 256,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": LLAMA["heads"],
        "num_hidden_layers": LLAMA["layers"],
        "num_key_value_heads": LLAMA["kv_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": torch_dtype,
        "transformers_version": "4.57.0",
        "use_cache": True,
        "vocab_size": LLAMA["vocab"],
    }


def llama_side_files(folder, torch_dtype):
    write_json(f"{folder}/config.json", llama_config(torch_dtype))
    write_json(f"{folder}/generation_config.json",
               {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
                "transformers_version": "4.57.0"})
    write_json(f"{folder}/tokenizer_config.json",
               {"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 256,
                "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>"})
    write_json(f"{folder}/special_tokens_map.json",
               {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def convert(weights, dtype):
    if dtype == "f32":
        return dict(weights)
    if dtype == "f16":
        return {k: v.astype(np.float16) for k, v in weights.items()}
    if dtype == "bf16":
        return {k: v.astype(ml_dtypes.bfloat16) for k, v in weights.items()}
    raise ValueError(dtype)


def make_llama():
    weights = llama_weights()
    names = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
    for dtype, torch_dtype in names.items():
        folder = f"{ROOT}/tiny-llama-{dtype}"
        os.makedirs(folder, exist_ok=True)
        save_file(convert(weights, dtype), f"{folder}/model.safetensors", metadata=METADATA)
        llama_side_files(folder, torch_dtype)

    # Sharded copy of the F16 weights: three shards in name order, index as transformers writes it.
    folder = f"{ROOT}/tiny-llama-sharded"
    os.makedirs(folder, exist_ok=True)
    f16 = convert(weights, "f16")
    ordered = sorted(f16)
    total = sum(f16[n].nbytes for n in ordered)
    shards, current, size = [], [], 0
    for n in ordered:
        if current and size + f16[n].nbytes > total / 3 + 1:
            shards.append(current)
            current, size = [], 0
        current.append(n)
        size += f16[n].nbytes
    shards.append(current)
    weight_map = {}
    for k, names_in_shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: f16[n] for n in names_in_shard}, f"{folder}/{fname}", metadata=METADATA)
        for n in names_in_shard:
            weight_map[n] = fname
    write_json(f"{folder}/model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    llama_side_files(folder, "float16")


# ---------------------------------------------------------------- tiny BERT (sentence-transformers)

def make_bert(name="tiny-bert", seed=7, h=64, i=256):
    rng = np.random.default_rng(seed)
    v, layers, pos = 512, 2, 128
    w = {
        "embeddings.word_embeddings.weight": heavy_tailed(rng, (v, h), outlier_columns=0),
        "embeddings.position_embeddings.weight": heavy_tailed(rng, (pos, h), outlier_columns=0),
        "embeddings.token_type_embeddings.weight": heavy_tailed(rng, (2, h), outlier_columns=0),
        "embeddings.LayerNorm.weight": norm_weight(rng, h),
        "embeddings.LayerNorm.bias": (0.01 * rng.standard_normal(h)).astype(np.float32),
        "embeddings.position_ids": np.arange(pos, dtype=np.int64).reshape(1, pos),
    }
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for part, (rows, cols) in {
            "attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
            "attention.output.dense": (h, h), "intermediate.dense": (i, h), "output.dense": (h, i),
        }.items():
            w[p + part + ".weight"] = heavy_tailed(rng, (rows, cols))
            w[p + part + ".bias"] = (0.01 * rng.standard_normal(rows)).astype(np.float32)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + ln + ".weight"] = norm_weight(rng, h)
            w[p + ln + ".bias"] = (0.01 * rng.standard_normal(h)).astype(np.float32)
    w["pooler.dense.weight"] = heavy_tailed(rng, (h, h))
    w["pooler.dense.bias"] = (0.01 * rng.standard_normal(h)).astype(np.float32)

    folder = f"{ROOT}/{name}"
    os.makedirs(folder, exist_ok=True)
    save_file(w, f"{folder}/model.safetensors", metadata=METADATA)
    write_json(f"{folder}/config.json", {
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": h, "initializer_range": 0.02, "intermediate_size": i,
        "layer_norm_eps": 1e-12, "max_position_embeddings": pos, "model_type": "bert",
        "num_attention_heads": 4, "num_hidden_layers": layers, "pad_token_id": 0,
        "position_embedding_type": "absolute", "torch_dtype": "float32", "transformers_version": "4.57.0",
        "type_vocab_size": 2, "use_cache": True, "vocab_size": v,
    })
    write_json(f"{folder}/modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ])
    write_json(f"{folder}/config_sentence_transformers.json",
               {"__version__": {"sentence_transformers": "3.0.0"}, "prompts": {}, "similarity_fn_name": "cosine"})
    write_json(f"{folder}/sentence_bert_config.json", {"do_lower_case": True, "max_seq_length": pos})
    write_json(f"{folder}/1_Pooling/config.json", {
        "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_mean_tokens": True, "word_embedding_dimension": h,
    })
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"tok{k}" for k in range(v - 5)]
    write_text(f"{folder}/vocab.txt", "\n".join(vocab) + "\n")


# ---------------------------------------------------------------- every dtype

def make_dtypes():
    rng = np.random.default_rng(99)
    folder = f"{ROOT}/dtypes"
    os.makedirs(folder, exist_ok=True)
    f32_special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.17549435e-38,
                            3.4028235e38, -3.4028235e38, 0.1, 65504.0, 65520.0, 1e-8], dtype=np.float32)
    f64_special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-320, 5e-324, 1.0000000596046448,
                            1.0000000596046449, 3.4028235677973366e38, 3.5e38, 1e-46, 0.1, np.pi],
                           dtype=np.float64)
    arrays = {
        "bool": (rng.random(24) > 0.5).reshape(4, 6),
        "u8": np.arange(256, dtype=np.uint8).reshape(16, 16),
        "i8": np.arange(-128, 128, dtype=np.int16).astype(np.int8).reshape(16, 16),
        "i16": np.array([-32768, -1, 0, 1, 32767, 12345], dtype=np.int16),
        "u16": np.array([0, 1, 65535, 40000], dtype=np.uint16),
        "i32": np.array([-2**31, -1, 0, 1, 2**31 - 1, 16777217], dtype=np.int32),
        "u32": np.array([0, 1, 2**32 - 1, 16777217], dtype=np.uint32),
        "i64": np.array([-2**63, -1, 0, 1, 2**63 - 1, 2**53 + 1], dtype=np.int64),
        "u64": np.array([0, 1, 2**64 - 1, 2**53 + 1], dtype=np.uint64),
        "f16": np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256),
        "bf16": np.arange(65536, dtype=np.uint32).astype(np.uint16).view(ml_dtypes.bfloat16).reshape(256, 256),
        "f32": np.concatenate([f32_special, rng.standard_normal(48).astype(np.float32)]).reshape(8, 8),
        "f64": np.concatenate([f64_special, rng.standard_normal(18)]).reshape(4, 8),
        "f8_e4m3": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).reshape(16, 16),
        "f8_e5m2": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e5m2).reshape(16, 16),
        "f8_e8m0": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).reshape(16, 16),
    }
    f4_codes = np.concatenate([np.arange(16), np.arange(16)[::-1]]).astype(np.uint8)
    save_with_f4(f"{folder}/all-dtypes.safetensors", arrays, {"f4": ([4, 8], pack_f4(f4_codes))})

    expected = {}
    for name, array in arrays.items():
        with np.errstate(over="ignore"):  # F64 values beyond the F32 range become inf, as intended
            expected[name] = np.asarray(array).astype(np.float32)
    expected["f4"] = f4_codes.view(ml_dtypes.float4_e2m1fn).astype(np.float32).reshape(4, 8)
    save_file(expected, f"{folder}/expected-f32.safetensors", metadata={"note": "float32 value of each tensor of all-dtypes.safetensors, by numpy/ml_dtypes"})


# ---------------------------------------------------------------- malformed files

def raw_file(header_bytes, data=b"", declared=None):
    n = len(header_bytes) if declared is None else declared
    return struct.pack("<Q", n) + header_bytes + data


def entry(name, dtype, shape, begin, end):
    return f'"{name}":{{"dtype":"{dtype}","shape":{json.dumps(shape)},"data_offsets":[{begin},{end}]}}'


def make_malformed():
    folder = f"{ROOT}/malformed"
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    cases = []

    def add(rule, content, tensor=None, description=""):
        path = f"{folder}/{rule}.safetensors"
        with open(path, "wb") as f:
            f.write(content)
        cases.append({"file": f"{rule}.safetensors", "rule": rule, "tensor": tensor, "description": description})

    w = np.arange(8, dtype=np.float32).tobytes()  # 32 bytes: "a" [2,2] F32 then "b" [4] F32 = 16 + 16
    a = entry("a", "F32", [2, 2], 0, 16)
    b = entry("b", "F32", [4], 16, 32)
    good = lambda *entries: ("{" + ",".join(entries) + "}").encode()

    add("file-too-small", b"\x10\x00\x00", description="3 bytes: not even the 8-byte header length")
    add("header-too-large", raw_file(b"{}", declared=100_000_001), description="declares a 100,000,001-byte header")
    add("header-incomplete", raw_file(good(a, b), w, declared=4096), description="declares 4096 header bytes; the file is shorter")
    add("header-not-utf8", raw_file(b'{"\xff\xfe":1}'), description="invalid UTF-8 bytes in the header")
    add("header-start", raw_file(b'[{"a":1}]'), description="the header is a JSON array, not an object")
    add("header-not-json", raw_file(b'{"a":{"dtype":"F32",}}'), description="trailing comma: not valid JSON")
    add("metadata-not-string-map", raw_file(good('"__metadata__":{"format":1}', a, b), w), description="__metadata__ maps a key to a number")
    add("entry-not-object", raw_file(good('"a":[1,2]', b.replace("16,32", "0,16")), w[:16]), tensor="a", description="tensor entry is an array")
    add("missing-dtype", raw_file(good('"a":{"shape":[2,2],"data_offsets":[0,16]}', b), w), tensor="a", description="no dtype")
    add("missing-shape", raw_file(good('"a":{"dtype":"F32","data_offsets":[0,16]}', b), w), tensor="a", description="no shape")
    add("missing-data-offsets", raw_file(good('"a":{"dtype":"F32","shape":[2,2]}', b), w), tensor="a", description="no data_offsets")
    add("unknown-dtype", raw_file(good(entry("a", "F33", [2, 2], 0, 16), b), w), tensor="a", description='dtype "F33"')
    add("invalid-shape", raw_file(good('"a":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}', b), w), tensor="a", description="a negative dimension")
    add("invalid-data-offsets", raw_file(good('"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0]}', b), w), tensor="a", description="one offset instead of two")
    add("offsets-reversed", raw_file(good(entry("a", "F32", [0], 16, 0), entry("b", "F32", [8], 0, 32)), w), tensor="a", description="end before begin")
    add("offsets-gap", raw_file(good(a, entry("b", "F32", [3], 20, 32)), w), tensor="b", description="4 unused bytes between a and b")
    add("offsets-overlap", raw_file(good(entry("a", "F32", [5], 0, 20), entry("b", "F32", [4], 16, 32)), w), tensor="b", description="b starts inside a")
    add("size-overflow", raw_file(good(a, entry("b", "F32", [4611686018427387904, 4], 16, 32)), w), tensor="b", description="shape product x 4 bytes overflows 64 bits")
    add("size-mismatch", raw_file(good(a, entry("b", "F32", [5], 16, 32)), w), tensor="b", description="5 F32 need 20 bytes; offsets span 16")
    add("sub-byte-misaligned", raw_file(good(entry("a", "F4", [3], 0, 2)), b"\x00\x00"), tensor="a", description="3 F4 values are 12 bits, not whole bytes")
    add("data-past-end", raw_file(good(a, b), w[:24]), tensor="b", description="the file is cut 8 bytes short (truncated)")
    add("trailing-bytes", raw_file(good(a, b), w + b"\x00\x00\x00\x00"), description="4 bytes after the last tensor")
    add("duplicate-name", raw_file(good(a, entry("a", "F32", [4], 16, 32)), w), tensor="a", description='the name "a" twice in the header')

    # Folder-level rules: two valid shards, each case a broken index.
    def shard_folder(rule, index, shard_files=None, tensor=None, description=""):
        path = f"{folder}/{rule}"
        os.makedirs(path)
        shard_files = shard_files if shard_files is not None else {
            "model-00001-of-00002.safetensors": {"x.weight": np.ones((2, 2), dtype=np.float32)},
            "model-00002-of-00002.safetensors": {"y.weight": np.zeros((3,), dtype=np.float32)},
        }
        for fname, tensors in shard_files.items():
            save_file(tensors, f"{path}/{fname}", metadata=METADATA)
        if isinstance(index, str):
            write_text(f"{path}/model.safetensors.index.json", index)
        else:
            write_json(f"{path}/model.safetensors.index.json", index)
        cases.append({"file": rule, "rule": rule, "tensor": tensor, "description": description})

    ok_map = {"x.weight": "model-00001-of-00002.safetensors", "y.weight": "model-00002-of-00002.safetensors"}
    meta = {"total_size": 28}
    shard_folder("index-not-json", '{"metadata": {"total_size": 28}, "weight_map": {', description="the index is cut off")
    shard_folder("index-missing-weight-map", {"metadata": meta}, description="no weight_map")
    shard_folder("index-shard-missing", {"metadata": meta, "weight_map": dict(ok_map, **{"z.weight": "model-00003-of-00003.safetensors"})},
                 description="names a shard that is not in the folder")
    shard_folder("index-tensor-missing", {"metadata": meta, "weight_map": dict(ok_map, **{"z.weight": "model-00002-of-00002.safetensors"})},
                 tensor="z.weight", description="maps z.weight to a shard that does not hold it")
    shard_folder("index-tensor-unlisted", {"metadata": meta, "weight_map": ok_map},
                 shard_files={"model-00001-of-00002.safetensors": {"x.weight": np.ones((2, 2), dtype=np.float32)},
                              "model-00002-of-00002.safetensors": {"y.weight": np.zeros((3,), dtype=np.float32),
                                                                   "y.extra": np.zeros((1,), dtype=np.float32)}},
                 tensor="y.extra", description="shard 2 holds y.extra, which the index does not list")
    shard_folder("tensor-in-two-shards", {"metadata": meta, "weight_map": ok_map},
                 shard_files={"model-00001-of-00002.safetensors": {"x.weight": np.ones((2, 2), dtype=np.float32)},
                              "model-00002-of-00002.safetensors": {"y.weight": np.zeros((3,), dtype=np.float32),
                                                                   "x.weight": np.ones((2, 2), dtype=np.float32)}},
                 tensor="x.weight", description="x.weight is in both shards")
    shard_folder("index-path-escape", {"metadata": meta, "weight_map": dict(ok_map, **{"y.weight": "../model-00002-of-00002.safetensors"})},
                 tensor="y.weight", description="a shard path that leaves the folder")
    shard_folder("index-duplicate-tensor",
                 '{"metadata": {"total_size": 28}, "weight_map": {"x.weight": "model-00001-of-00002.safetensors", '
                 '"y.weight": "model-00002-of-00002.safetensors", "x.weight": "model-00001-of-00002.safetensors"}}\n',
                 tensor="x.weight", description="the weight_map names x.weight twice")
    write_json(f"{folder}/expected.json", cases)
    return cases


def reference_verdicts(cases):
    """Which malformed single files the reference reader (safe_open) also rejects."""
    accepted = []
    for case in cases:
        if not case["file"].endswith(".safetensors"):
            continue
        try:
            with safetensors.safe_open(f"{ROOT}/malformed/{case['file']}", framework="numpy") as f:
                list(f.keys())
            accepted.append(case["rule"])
        except Exception:
            pass
    return accepted


# ---------------------------------------------------------------- checksums

def write_sums():
    skip = {"SHA256SUMS", "generate.py", "README.md"}
    lines = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames.sort()
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            if rel in skip or "__pycache__" in rel:
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {rel}")
    write_text(f"{ROOT}/SHA256SUMS", "\n".join(sorted(lines, key=lambda l: l.split("  ", 1)[1])) + "\n")


def main():
    make_llama()
    make_bert()
    # Rows of 128 and 512 values: every scheme's default group size (128) divides them,
    # so `make interop` can load each default output in transformers.
    make_bert("tiny-bert-128", seed=8, h=128, i=512)
    make_dtypes()
    cases = make_malformed()
    write_sums()
    accepted = reference_verdicts(cases)
    print(f"fixtures written under {ROOT}", file=sys.stderr)
    print(f"malformed files the reference reader accepts: {', '.join(accepted) or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
