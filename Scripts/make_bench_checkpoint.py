#!/usr/bin/env python3
"""Generates the benchmark checkpoint on demand (never committed).

usage: make_bench_checkpoint.py OUTDIR [--dtype f32|bf16] [--seed 0] [--layers 2] [--intermediate 11008]

A Llama-7B-shaped slice: per layer q/k/v/o 4096x4096, gate/up 11008x4096, down
4096x11008, two 4096 norms; Student-t (df=4) weights scaled by 0.02 with a few
outlier input channels, plus a final norm. The default, one layer, is about 0.81 GB
in F32 (0.40 GB in BF16); the largest tensor is 180 MB in F32. Deterministic for a
seed. `--intermediate 4096` makes the seven linear weights of a layer all 4096x4096
(0.47 GB in F32: the checkpoint `make bench-llama` compares with llama-quantize). Written with the reference writer (Python safetensors); the generator holds
the whole checkpoint in memory while writing.
"""
import argparse
import json
import os
import sys

import ml_dtypes
import numpy as np
from safetensors import TensorSpec, serialize_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--intermediate", type=int, default=11008)
    args = parser.parse_args()

    hidden, inter = 4096, args.intermediate
    shapes = []
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        shapes += [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes.append((p + f"self_attn.{name}.weight", (hidden, hidden)))
        shapes += [(p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter))]
    shapes.append(("model.norm.weight", (hidden,)))

    rng = np.random.default_rng(args.seed)
    dtype = np.float32 if args.dtype == "f32" else ml_dtypes.bfloat16
    os.makedirs(args.outdir, exist_ok=True)
    arrays = {}
    specs = {}
    for name, shape in shapes:
        if len(shape) == 1:
            w = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        else:
            w = (rng.standard_t(4, size=shape) * 0.02).astype(np.float32)
            cols = rng.choice(shape[1], size=8, replace=False)
            w[:, cols] *= 8.0
        w = np.ascontiguousarray(w.astype(dtype))
        arrays[name] = w
        specs[name] = TensorSpec(dtype=w.dtype.name, shape=list(w.shape), data_ptr=w.ctypes.data, data_len=w.nbytes)
    # serialize_file streams each tensor's buffer to disk; the arrays are already built, so
    # peak memory is the checkpoint size (fine for a dev machine with 24 GB).
    path = os.path.join(args.outdir, "model.safetensors")
    serialize_file(specs, path, metadata={"format": "pt"})
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
                   "intermediate_size": inter, "num_hidden_layers": args.layers, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "torch_dtype": "float32" if args.dtype == "f32" else "bfloat16"},
                  f, indent=2, sort_keys=True)
    largest = max(a.nbytes for a in arrays.values())
    print(f"{path}: {os.path.getsize(path) / 1e6:.0f} MB, largest tensor {largest / 1e6:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
