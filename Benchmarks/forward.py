#!/usr/bin/env python3
"""Times transformers' float32 CPU forward pass (logits for every token) on the tokens
swiftcompress-bench forward uses, at a given thread count, and prints tokens/s as JSON.

usage: PYTHON Benchmarks/forward.py MODEL --threads N --sequences S --length L [--runs R]
Token t of sequence s is (t * 7919 + s * 104729 + 13) % vocab (the same formula as the Swift side).
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    ids = torch.tensor([[(t * 7919 + s * 104729 + 13) % vocab for t in range(args.length)]
                        for s in range(args.sequences)])
    best = float("inf")
    with torch.inference_mode():
        model(input_ids=ids[:, :16])  # warm-up
        for _ in range(args.runs):
            start = time.perf_counter()
            logits = model(input_ids=ids, use_cache=False).logits
            best = min(best, time.perf_counter() - start)
    tokens = args.sequences * args.length
    print(json.dumps({"tokens": tokens, "seconds": best, "tokens_per_second": tokens / best,
                      "threads": args.threads, "attention": model.config._attn_implementation,
                      "logits_checksum": float(logits[:, -1, :8].double().sum())}))


if __name__ == "__main__":
    main()
