#!/usr/bin/env python3
"""Generates the scale benchmark's sharded checkpoint on demand (never committed).

usage: make_scale_checkpoint.py OUTDIR [--layers 11] [--seed 0]

The layers of make_bench_checkpoint.py (Llama-7B-shaped, F32, 0.81 GB each, largest
tensor 180 MB), one shard per layer, with model.safetensors.index.json as transformers
writes it: 11 layers make 8.9 GB. One layer is in memory at a time. Gaussian weights
(the values do not matter for memory and speed) with a few outlier input channels.
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--layers", type=int, default=11)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hidden, inter = 4096, 11008
    os.makedirs(args.outdir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    weight_map = {}
    total = 0
    count = args.layers
    for layer in range(count):
        p = f"model.layers.{layer}."
        shapes = [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
        shapes += [(p + f"self_attn.{n}.weight", (hidden, hidden)) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        shapes += [(p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter))]
        if layer == count - 1:
            shapes.append(("model.norm.weight", (hidden,)))
        tensors = {}
        for name, shape in shapes:
            if len(shape) == 1:
                w = (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
            else:
                w = rng.standard_normal(shape, dtype=np.float32)
                w *= 0.02
                w[:, rng.choice(shape[1], size=8, replace=False)] *= 8.0
            tensors[name] = w
        file = f"model-{layer + 1:05d}-of-{count:05d}.safetensors"
        save_file(tensors, os.path.join(args.outdir, file), metadata={"format": "pt"})
        for name, w in tensors.items():
            weight_map[name] = file
            total += w.nbytes
        print(f"{file}: {sum(w.nbytes for w in tensors.values()) / 1e9:.2f} GB", file=sys.stderr)
        del tensors
    with open(os.path.join(args.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
                   "intermediate_size": inter, "num_hidden_layers": count, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "torch_dtype": "float32"}, f, indent=2, sort_keys=True)
    print(f"{args.outdir}: {total / 1e9:.2f} GB in {count} shards, largest tensor {hidden * inter * 4 / 1e6:.0f} MB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
