#!/usr/bin/env python3
"""Generates the memory benchmark model of calibrate and evaluate on demand (never committed), with numpy.

usage: make_large_model.py OUTDIR [--seed 0] [--layers 24] [--hidden 768] [--intermediate 3072]
                           [--vocab 16000] [--heads 12] [--kv-heads 4]

A LlamaForCausalLM in F32 that transformers loads: by default 24 layers of hidden 768 with grouped
key-value heads (12 heads, 4 key-value heads of 64), SwiGLU MLP of 3072, untied 16000-token embedding
and head: 232M parameters, 930 MB. One layer is 35 MB, the head 49 MB, so the model is several times
larger than what `calibrate` and `evaluate` may hold at once (one layer or the head, the batch's
activations, 64 MB). Normal weights (std 0.02, norm weights near 1), deterministic for a seed, written
with the reference writer (Python safetensors).
"""
import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--kv-heads", type=int, default=4)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    h, inter, head_dim = args.hidden, args.intermediate, args.hidden // args.heads
    kv = args.kv_heads * head_dim

    def normal(*shape, std=0.02):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).astype(np.float32)

    def norm(n):
        return (1 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    tensors = {"model.embed_tokens.weight": normal(args.vocab, h, std=1.0)}
    for i in range(args.layers):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = norm(h)
        tensors[p + "self_attn.q_proj.weight"] = normal(h, h)
        tensors[p + "self_attn.k_proj.weight"] = normal(kv, h)
        tensors[p + "self_attn.v_proj.weight"] = normal(kv, h)
        tensors[p + "self_attn.o_proj.weight"] = normal(h, h)
        tensors[p + "post_attention_layernorm.weight"] = norm(h)
        tensors[p + "mlp.gate_proj.weight"] = normal(inter, h)
        tensors[p + "mlp.up_proj.weight"] = normal(inter, h)
        tensors[p + "mlp.down_proj.weight"] = normal(h, inter)
    tensors["model.norm.weight"] = norm(h)
    tensors["lm_head.weight"] = normal(args.vocab, h)

    os.makedirs(args.outdir, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
        "intermediate_size": inter, "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads, "head_dim": head_dim, "vocab_size": args.vocab,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": None,
        "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(tensors, os.path.join(args.outdir, "model.safetensors"), metadata={"format": "pt"})
    count = sum(t.size for t in tensors.values())
    print(f"{args.outdir}: {args.layers} layers, {count / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
