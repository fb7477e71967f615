#!/usr/bin/env python3
"""Vectorised numpy implementations of the quantization schemes, timed on a checkpoint.

The reference for `make bench`: the same round-to-nearest arithmetic as swiftcompress
(F32 input), written the way a numpy user would (whole-tensor array operations, one
thread), including reading the tensors and packing the outputs. Output: one JSON line per
scheme with the seconds and bytes processed.

usage: quantize_numpy.py CHECKPOINT_DIR [--schemes W4A16,...] [--repeats N]

BF16 checkpoints are converted to Float32 after loading (numpy has no BF16 arithmetic),
then quantized with the same Float32 code. Each scheme is timed N times (load included)
and the best time is printed.
"""
import argparse
import json
import sys
import time

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float32)


def int_group(w, bits, symmetric, group=128):
    out, inn = w.shape
    g = w.reshape(out, inn // group, group)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if symmetric:
        scale = np.abs(g).max(axis=2, keepdims=True) / np.float32((qmax - qmin) / 2)
        scale[scale == 0] = np.finfo(np.float32).eps
        q = np.clip(np.round(g / scale), qmin, qmax)
        zp = None
    else:
        low = np.minimum(g.min(axis=2, keepdims=True), 0)
        high = np.maximum(g.max(axis=2, keepdims=True), 0)
        scale = (high - low) / np.float32(qmax - qmin)
        scale[scale == 0] = np.finfo(np.float32).eps
        zp = np.round(np.clip(qmin - low / scale, qmin, qmax))
        q = np.clip(np.round(g / scale + zp), qmin, qmax)
    u = (q.astype(np.int32) + (1 << (bits - 1))).astype(np.uint32).reshape(out, -1, 32 // bits)
    packed = np.zeros(u.shape[:2], np.uint32)
    for j in range(32 // bits):
        packed |= u[:, :, j] << (bits * j)
    return packed, scale, zp


def fp8(w, block):
    out, inn = w.shape
    if block is None:
        scale = np.abs(w).max(axis=1, keepdims=True) / np.float32(448)
        full = scale
    else:
        br, bc = -(-out // 128), -(-inn // 128)
        padded = np.zeros((br * 128, bc * 128), np.float32)
        padded[:out, :inn] = np.abs(w)
        scale = padded.reshape(br, 128, bc, 128).max(axis=(1, 3)) / np.float32(448)
        full = np.repeat(np.repeat(scale, 128, 0), 128, 1)[:out, :inn]
    q = np.clip(w / full, -448, 448).astype(ml_dtypes.float8_e4m3fn)
    return q, scale


def fp4_codes(x):
    a = np.abs(x)
    m = (a > 0.25).astype(np.uint8) + (a >= 0.75) + (a > 1.25) + (a >= 1.75) + (a > 2.5) + (a >= 3.5) + (a > 5)
    return (np.signbit(x).astype(np.uint8) << 3) | m.astype(np.uint8)


def mxfp4(w):
    out, inn = w.shape
    g = w.reshape(out, inn // 32, 32)
    amax = np.abs(g).max(axis=2)
    bits = amax.view(np.uint32).astype(np.int64)
    p2 = ((bits + (1 << 21)) & (0x1FF << 23)).astype(np.uint32).view(np.float32)
    e = (127 + np.floor(np.log2(np.maximum(p2, np.float32(1e-38)))) - 2).clip(0, 254)
    scale = np.exp2(e - 127).astype(np.float32)
    codes = fp4_codes(np.clip(g / scale[:, :, None], -6, 6)).reshape(out, inn)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8), e.astype(np.uint8)


def nvfp4(w):
    out, inn = w.shape
    global_scale = np.float32(2688) / np.abs(w).max()
    g = w.reshape(out, inn // 16, 16)
    local = (global_scale * np.abs(g).max(axis=2) / np.float32(6)).clip(-448, 448).astype(ml_dtypes.float8_e4m3fn)
    effective = local.astype(np.float32) / global_scale
    effective[effective == 0] = np.float32(0.125) / global_scale
    codes = fp4_codes(np.clip(g / effective[:, :, None], -6, 6)).reshape(out, inn)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8), local


SCHEMES = {
    "W8A16": lambda w: int_group(w, 8, True),
    "W4A16": lambda w: int_group(w, 4, True),
    "W4A16_ASYM": lambda w: int_group(w, 4, False),
    "FP8_DYNAMIC": lambda w: fp8(w, None),
    "FP8_BLOCK": lambda w: fp8(w, 128),
    "MXFP4A16": mxfp4,
    "NVFP4A16": nvfp4,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    for scheme in args.schemes.split(","):
        best = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            tensors = load_file(f"{args.checkpoint}/model.safetensors")
            processed = 0
            for name, w in tensors.items():
                if w.ndim != 2 or not name.endswith(".weight"):
                    continue
                SCHEMES[scheme](w.astype(np.float32, copy=False))
                processed += w.nbytes
            seconds = time.perf_counter() - start
            best = seconds if best is None else min(best, seconds)
            del tensors
        print(json.dumps({"scheme": scheme, "seconds": best, "bytes": processed}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
