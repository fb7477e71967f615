#!/usr/bin/env python3
"""Checks pruned checkpoints with the real consumers (run by `make interop`).

usage: check_pruning.py SWIFTCOMPRESS WORKDIR

1. Structured pruning with --shrink: transformers loads the shrunk tiny Llama (MLP
   neurons and key-value head groups removed, config.json updated) and runs a forward
   pass, whose logits must equal those of the same pruning done in place (zeroed units
   contribute exactly nothing, so removing them must not change the function).
2. Bitmask storage: compressed-tensors 0.12's own BitmaskCompressor and
   Sparse24BitMaskCompressor decompress swiftcompress's sparse-bitmask and
   sparse-24-bitmask outputs to exactly the dense pruned weights.
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
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.config import CompressionFormat, SparsityCompressionConfig
    failures = []
    for pattern, fmt in [(None, CompressionFormat.sparse_bitmask), ("2:4", CompressionFormat.sparse_24_bitmask)]:
        tag = "24" if pattern else "unstructured"
        dense = os.path.join(work, f"dense-{tag}")
        sparse = os.path.join(work, f"sparse-{tag}")
        method = ["--method", "nm", "--pattern", pattern] if pattern else ["--method", "magnitude", "--sparsity", "0.6"]
        run(binary, "prune", FIXTURE, dense, *method)
        run(binary, "prune", FIXTURE, sparse, *method, "--sparse-format", "bitmask")
        config = json.load(open(os.path.join(sparse, "config.json")))["quantization_config"]["sparsity_config"]
        compressor = BaseCompressor.load_from_registry(fmt.value, config=SparsityCompressionConfig.load_from_registry(
            fmt.value, **{k: v for k, v in config.items() if k != "format"}))
        expected = load_file(os.path.join(dense, "model.safetensors"))
        restored = dict(compressor.decompress(sparse))
        pruned = [name for name in expected if name.endswith("_proj.weight")]
        wrong = [name for name in pruned if name not in restored or not torch.equal(restored[name], expected[name])]
        print(f"{fmt.value}: compressed-tensors decompressed {len(pruned) - len(wrong)} of {len(pruned)} weights exactly")
        if wrong:
            failures.append(f"{fmt.value}: {len(wrong)} weights differ, e.g. {wrong[:2]}")
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
