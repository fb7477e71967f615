#!/usr/bin/env python3
"""Makes the forward-pass benchmark model: a ~110M-parameter LlamaForCausalLM (hidden 768,
12 layers, 12 heads, 4 key-value heads, intermediate 2048, vocab 32000, tied embeddings),
float32, random weights N(0, 0.02^2) from seed 14, saved with transformers' save_pretrained.
Not committed: `make bench-forward` makes it under .build/bench-forward/.

usage: PYTHON Scripts/make_bench_model.py OUTDIR   (PYTHON: a venv with torch and transformers)
"""
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    out = sys.argv[1]
    torch.manual_seed(14)
    config = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048,
                         rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.02,
                         architectures=["LlamaForCausalLM"])
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    count = sum(p.numel() for p in model.parameters())
    print(f"{out}: {count / 1e6:.1f}M parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
