#!/usr/bin/env python3
"""Reads safetensors files written by swiftcompress with the reference Python package
and compares them with expectations. Used by the Swift test suite.

Usage:
  check_safetensors.py same-tensors WRITTEN REFERENCE
      every tensor of REFERENCE is in WRITTEN with the same dtype, shape and bytes,
      and the same values through safetensors' numpy loader where numpy has the dtype.
  check_safetensors.py cast WRITTEN SOURCE DTYPE
      every tensor of WRITTEN whose dtype is DTYPE equals the SOURCE tensor converted
      with numpy/ml_dtypes (round to nearest even); the others are byte-identical.
  check_safetensors.py sha256 WRITTEN RECORD.json
      every tensor RECORD.json lists (name -> {dtype, shape, sha256} of float32 bytes) is
      in WRITTEN as F32 with that shape and those bytes.
Prints one line per failure and exits 1 on any; prints "ok: N tensors" otherwise.
"""
import sys

import ml_dtypes
import numpy as np
import safetensors
from safetensors.numpy import load_file

NUMPY = {"F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL"}
ML = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32, "F64": np.float64}


def raw(path):
    with open(path, "rb") as f:
        return {name: info for name, info in safetensors.deserialize(f.read())}


def same_tensors(written, reference):
    a, b = raw(written), raw(reference)
    failures = []
    for name, ref in b.items():
        got = a.get(name)
        if got is None:
            failures.append(f"{name}: missing")
            continue
        for key in ("dtype", "shape"):
            if got[key] != ref[key]:
                failures.append(f"{name}: {key} {got[key]} != {ref[key]}")
        if bytes(got["data"]) != bytes(ref["data"]):
            failures.append(f"{name}: data differs")
    numpy_a = load_file(written) if all(v["dtype"] in NUMPY for v in a.values()) else None
    if numpy_a is not None:
        numpy_b = load_file(reference)
        for name, value in numpy_b.items():
            if not np.array_equal(numpy_a[name], value, equal_nan=value.dtype.kind == "f"):
                failures.append(f"{name}: numpy values differ")
    return failures, len(b)


def cast(written, source, dtype):
    a, s = raw(written), load_file(source)
    failures = []
    for name, info in a.items():
        if info["dtype"] == dtype:
            want = s[name].astype(np.float32).astype(ML[dtype])
            got = np.frombuffer(bytes(info["data"]), dtype=ML[dtype]).reshape(info["shape"])
            if got.shape != want.shape or got.tobytes() != want.tobytes():
                failures.append(f"{name}: {dtype} values differ from numpy/ml_dtypes rounding")
        else:
            if bytes(info["data"]) != s[name].tobytes():
                failures.append(f"{name}: kept tensor changed")
    return failures, len(a)


def sha256(written, record):
    import hashlib
    import json
    a = raw(written)
    expected = json.load(open(record))["tensors"]
    failures = []
    for name, want in expected.items():
        got = a.get(name)
        if got is None:
            failures.append(f"{name}: missing")
        elif got["dtype"] != "F32" or list(got["shape"]) != want["shape"]:
            failures.append(f"{name}: {got['dtype']} {got['shape']}, expected F32 {want['shape']}")
        elif hashlib.sha256(bytes(got["data"])).hexdigest() != want["sha256"]:
            failures.append(f"{name}: values differ from the reference dequantization")
    return failures, len(expected)


def main():
    mode = sys.argv[1]
    if mode == "same-tensors":
        failures, count = same_tensors(sys.argv[2], sys.argv[3])
    elif mode == "sha256":
        failures, count = sha256(sys.argv[2], sys.argv[3])
    elif mode == "cast":
        failures, count = cast(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print(f"ok: {count} tensors")


if __name__ == "__main__":
    main()
