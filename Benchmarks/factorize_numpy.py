#!/usr/bin/env python3
"""numpy reference for the factorization benchmark.

For each shape, a seeded Student-t (df=4) matrix, the same one swiftcompress-bench builds
(it writes it to a .npy file for us): `numpy.linalg.svd(full_matrices=False)` (the same
LAPACK, gesdd) truncated at each rank, and a numpy randomized SVD (Halko et al.: Gaussian
test matrix, OVERSAMPLING extra columns (10), POWER iterations (4) re-orthonormalised by QR;
swiftcompress normalises by LU between them, which spans the same subspaces). One JSON line
per measurement: seconds and relative Frobenius error.

usage: factorize_numpy.py MATRIX.npy RANK[,RANK...] [OVERSAMPLING POWER]
"""
import json
import sys
import time

import numpy as np


def rsvd(w, k, oversampling=10, power=4, seed=0):
    rng = np.random.default_rng(seed)
    m, n = w.shape
    omega = rng.standard_normal((n, k + oversampling)).astype(np.float32)
    q, _ = np.linalg.qr(w @ omega)
    for _ in range(power):
        z, _ = np.linalg.qr(w.T @ q)
        q, _ = np.linalg.qr(w @ z)
    u, s, vt = np.linalg.svd(q.T @ w, full_matrices=False)
    return (q @ u)[:, :k], s[:k], vt[:k]


def main():
    w = np.load(sys.argv[1])
    ranks = [int(r) for r in sys.argv[2].split(",")]
    oversampling, power = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (10, 4)
    norm = np.linalg.norm(w)
    start = time.perf_counter()
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    seconds = time.perf_counter() - start
    for k in ranks:
        error = float(np.sqrt(np.sum(s[k:].astype(np.float64) ** 2)) / norm)
        print(json.dumps({"method": "svd", "rank": k, "seconds": seconds, "error": error}), flush=True)
    for k in ranks:
        start = time.perf_counter()
        u, s, vt = rsvd(w, k, oversampling, power)
        seconds = time.perf_counter() - start
        error = float(np.linalg.norm(w - (u * s) @ vt) / norm)
        print(json.dumps({"method": "rsvd", "rank": k, "seconds": seconds, "error": error}), flush=True)


if __name__ == "__main__":
    main()
