#!/usr/bin/env python3
"""Golden pruning masks from an independent numpy implementation of each method.

The references are written the way the original code computes them, not the way
swiftcompress does (whole arrays, sorts rather than selection):

- magnitude, per tensor / per row / global: prune the k lowest |w| in a stable ascending
  argsort of the flattened tensor, of each row, or of all selected tensors concatenated
  in file order (k = floor(sparsity x count));
- N:M: in each group of M consecutive weights of a row, prune the M - N first of a stable
  ascending argsort (the same as keeping the N largest, the later one on ties);
- Wanda (Sun et al. 2023, github.com/locuslab/wanda, `prune_wanda`): metric |W| x ||X_j||
  broadcast over rows, computed in float32; unstructured: per output row, the
  int(columns x sparsity) lowest of a stable sort are pruned (`torch.sort(..., stable=True)`
  in the reference); N:M: per group of M, the M - N lowest.

It also writes the calibration-statistics fixture the Wanda cases use: for each linear
layer of the tiny Llama, the per-input-channel activation L2 norms (synthetic: log-normal
with a few outlier channels, seeded), in the file format docs/algorithms.md describes.

Selection is swiftcompress's default: 2-D .weight tensors, not embeddings, not lm_head.
Masks are stored packed (numpy.packbits, bitorder="little", per row), one U8 tensor
[rows, ceil(columns / 8)] per weight, 1 = kept.

usage: .build/venv/bin/python Scripts/reference/make_pruning_goldens.py [OUTDIR]
Default OUTDIR: Fixtures/golden/pruning.
"""
import json
import os
import struct
import sys

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy for safetensors)
import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ["tiny-llama-f32", "tiny-llama-bf16"]


def load_in_file_order(path):
    """Tensors as float32, in the order of their data offsets (as the file stores them)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "I64": np.int64}
    out = {}
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
        out[name] = array.astype(np.float32)
    return out


def selected(tensors):
    return [
        name for name, w in tensors.items()
        if w.ndim == 2 and name.endswith(".weight") and "embed" not in name and not name.startswith("lm_head")
    ]


def prune_lowest(scores_flat, k):
    keep = np.ones(scores_flat.size, dtype=bool)
    keep[np.argsort(scores_flat, kind="stable")[:k]] = False
    return keep


def magnitude_tensor(w, sparsity):
    return prune_lowest(np.abs(w).ravel(), int(np.floor(sparsity * w.size))).reshape(w.shape)


def rows_lowest(metric, sparsity):
    # Wanda's unstructured branch: sort each row, prune the first int(columns x sparsity).
    k = int(metric.shape[1] * sparsity)
    keep = np.ones(metric.shape, dtype=bool)
    order = np.argsort(metric, axis=1, kind="stable")[:, :k]
    np.put_along_axis(keep, order, False, axis=1)
    return keep


def n_of_m(metric, n, m):
    rows, columns = metric.shape
    groups = metric.reshape(rows, columns // m, m)
    keep = np.ones(groups.shape, dtype=bool)
    order = np.argsort(groups, axis=2, kind="stable")[:, :, : m - n]
    np.put_along_axis(keep, order, False, axis=2)
    return keep.reshape(rows, columns)


def magnitude_global(tensors, names, sparsity):
    flat = np.concatenate([np.abs(tensors[name]).ravel() for name in names])
    keep = prune_lowest(flat, int(np.floor(sparsity * flat.size)))
    masks, start = {}, 0
    for name in names:
        size = tensors[name].size
        masks[name] = keep[start:start + size].reshape(tensors[name].shape)
        start += size
    return masks


def calibration(tensors, names):
    rng = np.random.default_rng(20261201)
    stats = {}
    for name in names:
        columns = tensors[name].shape[1]
        norms = np.exp(rng.normal(0.0, 0.75, columns)).astype(np.float32)
        outliers = rng.choice(columns, 3, replace=False)
        norms[outliers] *= np.float32(20)
        stats[name[: -len(".weight")]] = norms
    return stats


def packed(masks):
    return {name: np.packbits(mask.astype(np.uint8), axis=-1, bitorder="little") for name, mask in masks.items()}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Fixtures", "golden", "pruning")
    os.makedirs(out, exist_ok=True)
    reference = load_in_file_order(os.path.join(ROOT, "Fixtures", "tiny-llama-f32", "model.safetensors"))
    stats = calibration(reference, selected(reference))
    save_file(stats, os.path.join(out, "tiny-llama-calibration.safetensors"), metadata={"format": "pt"})
    for model in MODELS:
        tensors = load_in_file_order(os.path.join(ROOT, "Fixtures", model, "model.safetensors"))
        names = selected(tensors)
        wanda = {name: np.abs(tensors[name]) * stats[name[: -len(".weight")]][None, :] for name in names}
        cases = {
            "magnitude-tensor-0.5": {n: magnitude_tensor(tensors[n], 0.5) for n in names},
            "magnitude-row-0.3": {n: rows_lowest(np.abs(tensors[n]), 0.3) for n in names},
            "magnitude-global-0.6": magnitude_global(tensors, names, 0.6),
            "magnitude-2of4": {n: n_of_m(np.abs(tensors[n]), 2, 4) for n in names},
            "magnitude-4of8": {n: n_of_m(np.abs(tensors[n]), 4, 8) for n in names},
            "wanda-row-0.5": {n: rows_lowest(wanda[n], 0.5) for n in names},
            "wanda-2of4": {n: n_of_m(wanda[n], 2, 4) for n in names},
        }
        folder = os.path.join(out, model)
        os.makedirs(folder, exist_ok=True)
        for case, masks in cases.items():
            save_file(packed(masks), os.path.join(folder, case + ".safetensors"), metadata={"format": "pt"})
    print(f"pruning goldens written under {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
