#!/usr/bin/env python3
"""Checks pruned checkpoints with the real consumers (run by `make interop`).

usage: check_pruning.py SWIFTCOMPRESS WORKDIR

1. Structured pruning with --shrink: transformers loads the shrunk tiny Llama (MLP
   neurons and key-value head groups removed, config.json updated) and runs a forward
   pass, whose logits must equal those of the same pruning done in place (zeroed units
   contribute exactly nothing, so removing them must not change the function).
2. Bitmask storage: `swiftcompress decompress` expands the sparse-bitmask and
   sparse-24-bitmask outputs to exactly the dense pruned weights. (compressed-tensors 0.12's
   BitmaskCompressor and Sparse24BitMaskCompressor decoded them to the same weights until
   0.20 removed them; transformers refuses these outputs, checked by check_loading.py.)
"""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "Fixtures", "tiny-llama-f32")


def run(binary, *arguments):
    result = subprocess.run([binary, *arguments, "--force", "-q"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"swiftcompress {' '.join(arguments)} failed ({result.returncode}): {result.stderr}")


def logits(folder):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    ids = torch.tensor([[1, 17, 42, 99, 250, 3, 7, 511]])
    with torch.no_grad():
        return model(ids).logits, model


def check_structured(binary, work):
    failures = []
    for unit, ratio in [("mlp", "0.25"), ("heads", "0.5")]:
        shrunk = os.path.join(work, f"shrunk-{unit}")
        zeroed = os.path.join(work, f"zeroed-{unit}")
        common = ["--method", "structured", "--structure", unit, "--ratio", ratio]
        run(binary, "prune", FIXTURE, shrunk, *common, "--shrink")
        run(binary, "prune", FIXTURE, zeroed, *common)
        config = json.load(open(os.path.join(shrunk, "config.json")))
        small, small_model = logits(shrunk)
        full, _ = logits(zeroed)
        parameters = sum(p.numel() for p in small_model.parameters())
        difference = (small - full).abs().max().item()
        size = sum(os.path.getsize(os.path.join(shrunk, f)) for f in os.listdir(shrunk) if f.endswith(".safetensors"))
        print(
            f"{unit} --ratio {ratio} --shrink: transformers loaded it (intermediate_size "
            f"{config['intermediate_size']}, heads {config['num_attention_heads']}/{config['num_key_value_heads']}, "
            f"{parameters} parameters, {size} bytes); max |logits - in-place pruned logits| = {difference:.2e}")
        if not difference < 1e-4:
            failures.append(f"{unit}: shrunk and zeroed models disagree by {difference}")
    return failures


def check_bitmask(binary, work):
    failures = []
    for pattern in (None, "2:4"):
        tag = "24" if pattern else "unstructured"
        dense = os.path.join(work, f"dense-{tag}")
        sparse = os.path.join(work, f"sparse-{tag}")
        expanded = os.path.join(work, f"expanded-{tag}")
        method = ["--method", "nm", "--pattern", pattern] if pattern else ["--method", "magnitude", "--sparsity", "0.6"]
        run(binary, "prune", FIXTURE, dense, *method)
        run(binary, "prune", FIXTURE, sparse, *method, "--sparse-format", "bitmask")
        run(binary, "decompress", sparse, expanded)
        expected = load_file(os.path.join(dense, "model.safetensors"))
        restored = load_file(os.path.join(expanded, "model.safetensors"))
        wrong = [name for name in expected if name not in restored or not torch.equal(restored[name], expected[name])]
        print(f"bitmask {tag}: decompress expanded {len(expected) - len(wrong)} of {len(expected)} tensors exactly")
        if wrong:
            failures.append(f"bitmask {tag}: {len(wrong)} tensors differ, e.g. {wrong[:2]}")
    return failures


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures = check_structured(binary, work) + check_bitmask(binary, work)
    if failures:
        sys.exit("FAILED:\n" + "\n".join(failures))
    print("interop: all checks passed")


if __name__ == "__main__":
    main()
