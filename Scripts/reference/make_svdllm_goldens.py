#!/usr/bin/env python3
"""SVD-LLM golden: a numpy transcription of the whitened truncated SVD (Wang et al. 2024,
arXiv 2403.07378, section 3.1), independent of the Swift code.

S = cholesky(H + 1e-6 * mean(diag H) * I) (lower, H = S S^T); W S = U Sigma V^T;
W' = U_k Sigma_k V_k^T S^-1. Writes Fixtures/golden/calibrated/svd-llm.safetensors with F32
`weight` [48, 64], `hessian` [64, 64] (X^T X of correlated Gaussian inputs, X [512, 64]),
`product` [48, 64] (W' for rank 12) and, for comparison, `plain` (the truncated SVD of W).
Run with .build/venv/bin/python (numpy, safetensors).
"""
import os
import sys

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Fixtures", "golden", "calibrated", "svd-llm.safetensors")


def main() -> None:
    rng = np.random.default_rng(20261202)
    rows, columns, rank, tokens = 48, 64, 12, 512
    w = rng.standard_normal((rows, columns)).astype(np.float32)
    scales = 10.0 ** rng.uniform(-1, 1, columns)
    shared = rng.standard_normal((tokens, 1))
    x = ((0.7 * shared + rng.standard_normal((tokens, columns))) * scales).astype(np.float32)
    h = (x.T.astype(np.float64) @ x.astype(np.float64)).astype(np.float32)
    hd = h.astype(np.float64)
    hd[np.diag_indices(columns)] += 1e-6 * np.mean(np.diag(hd))
    s = np.linalg.cholesky(hd)
    u, sigma, vt = np.linalg.svd(w.astype(np.float64) @ s, full_matrices=False)
    product = (u[:, :rank] * sigma[:rank]) @ vt[:rank] @ np.linalg.inv(s)
    u2, sigma2, vt2 = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    plain = (u2[:, :rank] * sigma2[:rank]) @ vt2[:rank]
    save_file(
        {
            "weight": w,
            "hessian": h,
            "product": product.astype(np.float32),
            "plain": plain.astype(np.float32),
        },
        OUT,
        metadata={"rank": str(rank), "dampening": "1e-6", "numpy": np.__version__, "seed": "20261202"},
    )
    print("wrote", os.path.normpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
