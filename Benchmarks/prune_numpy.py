#!/usr/bin/env python3
"""Vectorised numpy implementations of the pruning methods, timed on a checkpoint.

The reference for `make bench`: the same job as `swiftcompress prune` (read the
checkpoint, choose the mask, write the pruned dense checkpoint with safetensors),
written the way a numpy user would (whole-tensor arrays, argpartition/argsort, one
thread). Selection: 2-D .weight tensors, not embeddings or lm_head. Output: one JSON line
per method with the best time of --repeats runs and the bytes of weights processed.

usage: prune_numpy.py CHECKPOINT_DIR OUTDIR --calibration STATS [--methods ...] [--repeats N]
       prune_numpy.py CHECKPOINT_DIR --write-calibration STATS
"""
import argparse
import json
import os
import sys
import time

import ml_dtypes  # noqa: F401  (BF16 checkpoints)
import numpy as np
from safetensors.numpy import load_file, save_file


def selected(tensors):
    return [n for n, w in tensors.items()
            if w.ndim == 2 and n.endswith(".weight") and "embed" not in n and not n.startswith("lm_head")]


def prune_lowest(scores, k):
    keep = np.ones(scores.size, dtype=bool)
    if k > 0:
        keep[np.argpartition(scores.ravel(), k - 1)[:k]] = False
    return keep.reshape(scores.shape)


def rows_lowest(metric, sparsity):
    k = int(metric.shape[1] * sparsity)
    keep = np.ones(metric.shape, dtype=bool)
    np.put_along_axis(keep, np.argpartition(metric, k - 1, axis=1)[:, :k], False, axis=1)
    return keep


def two_of_four(metric):
    groups = metric.reshape(-1, 4)
    keep = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(keep, np.argsort(groups, axis=1)[:, :2], False, axis=1)
    return keep.reshape(metric.shape)


def masks(method, tensors, names, stats):
    if method == "magnitude-tensor":
        return {n: prune_lowest(np.abs(tensors[n].astype(np.float32)), tensors[n].size // 2) for n in names}
    if method == "magnitude-global":
        scores = [np.abs(tensors[n].astype(np.float32)).ravel() for n in names]
        keep = prune_lowest(np.concatenate(scores), sum(s.size for s in scores) // 2)
        out, start = {}, 0
        for n, s in zip(names, scores):
            out[n] = keep[start:start + s.size].reshape(tensors[n].shape)
            start += s.size
        return out
    if method == "2:4":
        return {n: two_of_four(np.abs(tensors[n].astype(np.float32))) for n in names}
    if method == "wanda":
        return {n: rows_lowest(np.abs(tensors[n].astype(np.float32)) * stats[n[:-7]][None, :], 0.5) for n in names}
    raise ValueError(method)


def write_calibration(checkpoint, path):
    tensors = load_file(f"{checkpoint}/model.safetensors")
    rng = np.random.default_rng(7)
    stats = {n[:-7]: np.exp(rng.normal(0, 0.75, tensors[n].shape[1])).astype(np.float32) for n in selected(tensors)}
    save_file(stats, path)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("outdir", nargs="?")
    parser.add_argument("--calibration")
    parser.add_argument("--write-calibration")
    parser.add_argument("--methods", default="magnitude-tensor,magnitude-global,2:4,wanda")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.write_calibration:
        write_calibration(args.checkpoint, args.write_calibration)
        return
    stats = load_file(args.calibration)
    os.makedirs(args.outdir, exist_ok=True)
    for method in args.methods.split(","):
        best = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            tensors = load_file(f"{args.checkpoint}/model.safetensors")
            names = selected(tensors)
            keep = masks(method, tensors, names, stats)
            for n in names:
                tensors[n] = np.where(keep[n], tensors[n], np.zeros((), tensors[n].dtype))
            save_file(tensors, f"{args.outdir}/model.safetensors", metadata={"format": "pt"})
            seconds = time.perf_counter() - start
            processed = sum(tensors[n].nbytes for n in names)
            best = seconds if best is None else min(best, seconds)
            del tensors, keep
        print(json.dumps({"method": method, "seconds": best, "bytes": processed}), flush=True)
    os.remove(f"{args.outdir}/model.safetensors")


if __name__ == "__main__":
    sys.exit(main())
