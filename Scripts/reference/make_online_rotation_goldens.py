#!/usr/bin/env python3
"""Golden for the online, block-wise Hadamard rotation (`quantize --rotate block-hadamard:B`).

llm-compressor 0.14.0.1's QuIPModifier (rotations ["v"], transform_type "hadamard",
transform_block_size B) followed by a data-free QuantizationModifier (W4A16 with group 32,
round to nearest) on Fixtures/models/llama (hidden 64, intermediate 128), with
compressed-tensors 0.20.1 and torch 2.15.0 on the CPU, saved with save_compressed. The
reference applies `transform_config` with compressed-tensors' own `apply_transform_config`:
the `weight_input` transform is fused into each targeted Linear's weight (W <- W H, H the
block-diagonal normalised Sylvester matrix) in float64, the `input` transform stays an online
hook (x <- x H) and its matrix is saved as a tensor `<module>.v_input.weight`.

Writes Fixtures/golden/online-rotation/ (small; the committed files are BLOCK 16 and 32):
- `config-blockB.json`: the reference's `quantization_config` (with `transform_config`) only;
- `layer0-blockB.safetensors`: layer 0's saved tensors (every `weight_packed`, `weight_scale`,
  `weight_shape` and `v_input.weight`), the dense fused weights the quantizer saw
  (`<module>.fused`, float32, W H computed by the reference), and `hadamard.16/32/64/128`:
  compressed-tensors' `deterministic_hadamard_matrix(n)` (unnormalised, float32);
- `README.md` is written by hand.

usage: /work/venvs/ref/bin/python Scripts/reference/make_online_rotation_goldens.py [BLOCK] [OUTDIR]
"""
import importlib.metadata as md
import json
import os
import sys
import tempfile

import torch

torch.set_num_threads(1)
torch.manual_seed(0)

from compressed_tensors.transform.utils.hadamard import deterministic_hadamard_matrix  # noqa: E402
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme  # noqa: E402
from compressed_tensors.transform import apply_transform_config  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from llmcompressor import oneshot  # noqa: E402
from llmcompressor.modifiers.quantization import QuantizationModifier  # noqa: E402
from llmcompressor.modifiers.transform import QuIPModifier  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "Fixtures", "models", "llama")


def main():
    block = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "Fixtures", "golden", "online-rotation")
    os.makedirs(out, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    scheme = QuantizationScheme(
        targets=["Linear"],
        weights=QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32),
    )
    quip = QuIPModifier(rotations=["v"], transform_type="hadamard", transform_block_size=block, ignore="lm_head")
    recipe = [quip, QuantizationModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])]
    oneshot(model=model, recipe=recipe)
    # The fused weights as the quantizer saw them: the same transform_config applied by
    # compressed-tensors' apply_transform_config (what QuIPModifier.on_calibration_start calls)
    # to a fresh copy of the model.
    fresh = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    apply_transform_config(fresh, quip.transform_config)
    fused = {
        name + ".fused": module.weight.detach().to(torch.float32).clone()
        for name, module in fresh.named_modules()
        if isinstance(module, torch.nn.Linear) and name.startswith("model.layers.0.")
    }
    with tempfile.TemporaryDirectory() as saved:
        model.save_pretrained(saved, save_compressed=True)
        with open(os.path.join(saved, "config.json")) as f:
            config = json.load(f)
        tensors = {}
        for file in sorted(os.listdir(saved)):
            if file.endswith(".safetensors"):
                tensors.update(load_file(os.path.join(saved, file)))
        names = sorted(tensors)
    print("saved tensors:", len(names))
    for name in names:
        if "layers.0." in name or "v_input" in name or "embed" in name or "lm_head" in name:
            print(" ", name, tuple(tensors[name].shape), tensors[name].dtype)
    keep = {k: v.contiguous() for k, v in tensors.items() if k.startswith("model.layers.0.") and "norm" not in k}
    keep.update({k: v.contiguous() for k, v in fused.items()})
    for n in (16, 32, 64, 128):
        keep[f"hadamard.{n}"] = deterministic_hadamard_matrix(n, torch.float32).contiguous()
    # The fused weights equal W H (block-diagonal, normalised) of the original weights.
    for name, value in fused.items():
        module = name[: -len(".fused")]
        w = original[module + ".weight"].to(torch.float64)
        h = deterministic_hadamard_matrix(block, torch.float64) / block**0.5
        expected = (w.unflatten(-1, (-1, block)) @ h).flatten(-2)
        print(" ", module, "max |fused - W H| =", float((value.double() - expected).abs().max()))
    versions = {p: md.version(p) for p in ("llmcompressor", "compressed-tensors", "torch", "transformers")}
    metadata = {"block": str(block), "versions": json.dumps(versions, sort_keys=True), "model": "Fixtures/models/llama"}
    save_file(keep, os.path.join(out, f"layer0-block{block}.safetensors"), metadata=metadata)
    with open(os.path.join(out, f"config-block{block}.json"), "w") as f:
        json.dump({"quantization_config": config["quantization_config"], "versions": versions}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(config["quantization_config"], indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
