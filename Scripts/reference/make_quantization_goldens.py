#!/usr/bin/env python3
"""Produces the quantization goldens with the real reference, once, on a dev machine.

llm-compressor 0.14.0.1 (`model_free_ptq`) with compressed-tensors 0.20.0 and torch
2.15.0 on CPU (see ../shared/FORMATS.md for the install; it is ~6 GB, so it never runs
in CI). For every scheme and for the F32, F16 and BF16 tiny Llama fixtures, it quantizes with
the same tensor selection swiftcompress uses by default (linear weights: lm_head and the
embedding ignored; norms are skipped by llm-compressor itself), and dequantizes the
result with compressed-tensors' own dequantizer to F32. The dequantized tensors are not
committed (14 x 2 MB): `dequantized.json` records, per tensor, the dtype, shape and the
SHA-256 of its F32 bytes, which a bit-exact decoder must reproduce.

compressed-tensors 0.20's model-free dequantizer stops on float-quantized (FP8)
checkpoints that keep 1-D norm weights ("Dependency weight ...input_layernorm.weight_scale
not found"); for those two schemes the script decodes with the arithmetic of the
library's `_dequantize` (weight.to(scale.dtype) * scale in the scale's dtype, the scale
broadcast per row or per 128x128 block, then to float32) and records that it did.
MXFP8A16 stops the same way; it is decoded by the library's dequantizer told to ignore the
norms (`ignore=["re:.*norm$"]`), which the record names too.

The MX presets MXFP8A16 (`mxfp8-quantized`) and MXFP6A16 (`mxfp6-pack-quantized`) and
the integer presets W2A16, W3A16, W5A16 and W6A16 (`pack-quantized`, group 128,
symmetric) are presets of compressed-tensors 0.20 and are passed by name; the library's
dequantizer decodes all of them.

usage: .build/ref-venv/bin/python Scripts/reference/make_quantization_goldens.py
           [--schemes S,S,...] [--models M,M,...] [OUTDIR]
Default OUTDIR: Fixtures/golden/quantization. Writes <model>/<scheme>/: the quantized
checkpoint as the reference writes it, plus dequantized.json. --schemes and --models
(comma-separated) regenerate only those folders, e.g.
`--schemes MXFP8A16,MXFP6A16,W2A16,W3A16,W5A16,W6A16` leaves the older goldens alone.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file
from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer, convert_checkpoint
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from llmcompressor.entrypoints.model_free import model_free_ptq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMES = ["W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK", "MXFP4A16", "NVFP4A16",
           "MXFP8A16", "MXFP6A16", "W2A16", "W3A16", "W5A16", "W6A16"]
# Per-channel integer variants (one scale per output row): not presets, so passed as
# custom schemes; the reference names their config group "config_group_0".
CHANNEL_SCHEMES = {"W8A16-channel": 8, "W4A16-channel": 4}
MODELS = ["tiny-llama-f32", "tiny-llama-f16", "tiny-llama-bf16"]
IGNORE = ["lm_head", "re:.*embed_tokens.*"]
# Float-quantized schemes whose goldens decode with the arithmetic below (see the docstring).
FP8_SCHEMES = ["FP8_DYNAMIC", "FP8_BLOCK"]
# The 1-D norm weights, which the model-free dequantizer otherwise takes for FP8 weights.
NORMS = "re:.*norm$"


def main():
    parser = argparse.ArgumentParser(description="quantization goldens from the reference")
    parser.add_argument("outdir", nargs="?", default=os.path.join(ROOT, "Fixtures/golden/quantization"))
    parser.add_argument("--schemes", help="comma-separated subset of: " + ",".join(SCHEMES + list(CHANNEL_SCHEMES)))
    parser.add_argument("--models", help="comma-separated subset of: " + ",".join(MODELS))
    args = parser.parse_args()
    schemes = pick(args.schemes, SCHEMES + list(CHANNEL_SCHEMES), parser)
    models = pick(args.models, MODELS, parser)
    out_root = args.outdir
    for model in models:
        source = os.path.join(ROOT, "Fixtures", model)
        for scheme in schemes:
            out = os.path.join(out_root, model, scheme)
            dense = out + "-dequantized"
            for path in (out, dense):
                shutil.rmtree(path, ignore_errors=True)
            preset = scheme
            if scheme in CHANNEL_SCHEMES:
                preset = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
                    num_bits=CHANNEL_SCHEMES[scheme], type="int", symmetric=True, strategy="channel"))
            model_free_ptq(model_stub=source, save_directory=out, scheme=preset, ignore=IGNORE,
                           max_workers=1, device="cpu")
            try:
                tensors = dequantize(out, dense)
                method = "compressed_tensors.entrypoints.convert.CompressedTensorsDequantizer(dtype=torch.float32)"
            except ValueError:
                if scheme in FP8_SCHEMES:
                    tensors = decode_float_quantized(out)
                    method = "(weight.to(scale.dtype) * scale).float(), scale broadcast per row / per 128x128 block"
                else:  # MXFP8A16 keeps the name `weight` too: the library's decoder, norms ignored
                    shutil.rmtree(dense, ignore_errors=True)
                    tensors = dequantize(out, dense, ignore=[NORMS])
                    method = ("compressed_tensors.entrypoints.convert.CompressedTensorsDequantizer("
                              f"dtype=torch.float32, ignore=[{NORMS!r}])")
            shutil.rmtree(dense, ignore_errors=True)
            record = {"method": method, "tensors": {
                name: {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                       "sha256": hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()}
                for name, t in sorted(tensors.items()) if t.dtype == torch.float32}}
            with open(os.path.join(out, "dequantized.json"), "w") as f:
                f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
            print(f"{model} {scheme}: done ({method})", file=sys.stderr)


def dequantize(folder, dense, ignore=()):
    convert_checkpoint(model_stub=folder, save_directory=dense,
                       converter=CompressedTensorsDequantizer(folder, ignore=ignore, dtype=torch.float32))
    tensors = {}
    for name in sorted(os.listdir(dense)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(dense, name)))
    return tensors


def pick(arg, known, parser):
    if not arg:
        return known
    chosen = [name for name in arg.split(",") if name]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    return chosen


def decode_float_quantized(folder):
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    out = {}
    for name, t in tensors.items():
        if name.endswith("_scale"):
            continue
        scale = tensors.get(name + "_scale")
        if scale is None or not name.endswith(".weight"):
            out[name] = t  # unquantized tensors keep their dtype, as the dequantizer leaves them
            continue
        rows, cols = t.shape
        s = scale
        if tuple(s.shape) == (rows, 1):  # FP8_DYNAMIC: one scale per output row
            full = s.expand(rows, cols)
        else:  # FP8_BLOCK: one scale per 128 x 128 block, the last blocks cropped
            full = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:rows, :cols]
        out[name] = (t.to(scale.dtype) * full.to(scale.dtype)).float()
    return out


if __name__ == "__main__":
    main()
