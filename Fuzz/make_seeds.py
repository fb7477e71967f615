#!/usr/bin/env python3
"""Writes the fuzz corpus seeds into a folder (default Fuzz/corpus/safetensors).

Seeds: every Fixtures/malformed/*.safetensors, every file of the index-* fixture
folders, the tiny sharded Llama's index, and a few small valid files made here (every
dtype with metadata, an empty file, a scalar and a zero-sized tensor, an unpadded F4
header with escaped metadata). Plain Python, no dependencies. `make fuzz-merge`
then minimises the corpus into libFuzzer's hash-named files.
"""
import glob
import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BITS = {"BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
        "F32": 32, "I64": 64, "U64": 64, "F64": 64, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F4": 4}


def safetensors(tensors, metadata=None, pad=True):
    header = {} if metadata is None else {"__metadata__": metadata}
    data = b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Fuzz/corpus/safetensors")
    os.makedirs(out, exist_ok=True)
    every = {f"model.layers.{i}.{d.lower()}": (d, [2, 2], bytes(range(4 * b // 8))) for i, (d, b) in enumerate(BITS.items())}
    valid = {
        "valid-all-dtypes.safetensors": safetensors(every, {"format": "pt", "name": "tiny \u00e9"}),
        "valid-empty.safetensors": safetensors({}),
        "valid-scalar-and-zero.safetensors": safetensors(
            {"s": ("F32", [], b"\0\0\x80\x3f"), "z": ("BF16", [0, 3], b""), "e": ("U8", [3], b"abc")}, {}),
        "valid-f4-nopad.safetensors": safetensors(
            {"w": ("F4", [2, 3], b"\x12\x34\x56")}, {"k": "v", "escaped": 'a"b\\\\c\\u00e9\\n'}, pad=False),
    }
    for name, data in valid.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    fixtures = os.path.join(ROOT, "Fixtures")
    for path in sorted(glob.glob(os.path.join(fixtures, "malformed/*.safetensors"))):
        shutil.copy(path, os.path.join(out, "malformed-" + os.path.basename(path)))
    for folder in sorted(glob.glob(os.path.join(fixtures, "malformed/*/"))):
        for path in sorted(glob.glob(folder + "*")):
            shutil.copy(path, os.path.join(out, os.path.basename(folder.rstrip("/")) + "-" + os.path.basename(path)))
    shutil.copy(os.path.join(fixtures, "tiny-llama-sharded/model.safetensors.index.json"),
                os.path.join(out, "valid-tiny-llama-sharded.index.json"))


if __name__ == "__main__":
    main()
