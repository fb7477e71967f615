"""Goldens for Sources/LinearAlgebra/Hadamard.swift: scipy.linalg.hadamard(n) for n = 2..256.

Writes Fixtures/golden/rotation/hadamard.safetensors with one tensor per order, "hadamard.<n>",
the unnormalised Sylvester matrix (entries +1/-1, float16, exact for +-1; row-major) exactly as scipy returns it;
the Swift test scales it by 1/sqrt(n) and compares.

Run with the reference venv: /work/venvs/ref/bin/python Scripts/reference/make_hadamard_goldens.py
"""

import pathlib

import numpy as np
import scipy
import scipy.linalg
from safetensors.numpy import save_file

root = pathlib.Path(__file__).resolve().parents[2]
out = root / "Fixtures" / "golden" / "rotation"
out.mkdir(parents=True, exist_ok=True)

tensors = {}
n = 2
while n <= 256:
    tensors[f"hadamard.{n}"] = scipy.linalg.hadamard(n).astype(np.float16)
    n *= 2
save_file(tensors, str(out / "hadamard.safetensors"), metadata={"scipy": scipy.__version__})
print(f"wrote {len(tensors)} matrices with scipy {scipy.__version__} to {out / 'hadamard.safetensors'}")
