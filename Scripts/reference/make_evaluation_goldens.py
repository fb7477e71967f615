#!/usr/bin/env python3
"""Golden figures for `swiftcompress evaluate` and `swiftcompress calibrate`, from transformers.

On the fixtures Fixtures/tiny-llama-f32 (LlamaForCausalLM, vocabulary 512) and Fixtures/tiny-bert
(BertModel in a sentence-transformers folder, mean pooling), with fixed token-id samples (written
as --tokens JSON lines files, seeded numpy draws):

1. statistics.<model>.safetensors: forward hooks on every nn.Linear but lm_head (and BERT's
   pooler, which sentence-transformers does not run) collect, over all tokens, the count
   (`<module>.input_count`, I64 [1]), each input channel's sum of squares
   (`<module>.input_sum_squares`, F64 [C]), mean absolute value (`<module>.input_mean_abs`, F64
   [C]) and XᵀX (`<module>.input_gram`, F32 [C, C], accumulated in float64): the names
   `swiftcompress calibrate --hessians` writes. Modules are named as the checkpoint's weights.
2. evaluation.<model>.json: the W4A16 copy made by `swiftcompress quantize MODEL OUT --scheme
   W4A16` (BERT: `--group-size 32`, its rows have 64 values; the options are in the JSON),
   decompressed by `swiftcompress decompress` and loaded as a dense model, against the
   original on the same tokens. Decoders: every position followed by a token in its sample is
   scored; log softmax in float64 of the float32 logits; KL(P_ref || P_cand) per position (mean,
   median, 99th and 99.9th percentile with numpy's linear interpolation, min, max); the share of
   positions whose argmax agree; both perplexities (exp of the mean next-token NLL). Encoders:
   the cosine of each sample's mean-pooled embeddings (reference vs candidate; mean, min) and the
   Spearman correlation (scipy.stats.spearmanr: average ranks for ties) of the upper triangles of
   the two pairwise cosine-similarity matrices.

3. metrics.safetensors / metrics.json: the metrics alone, computed by numpy/torch on seeded
   logits (4 samples, vocabulary 50) and embeddings (6 x 8, two equal, so tied similarities),
   with llama-perplexity's ± and numpy's percentiles; no model involved.

Each sample is run alone (batch of one, no padding, attention mask of ones, BERT token types 0).

usage: $REFERENCE_PYTHON Scripts/reference/make_evaluation_goldens.py SWIFTCOMPRESS [OUTDIR]
SWIFTCOMPRESS is the built CLI (.build/debug/swiftcompress). Default OUTDIR: Fixtures/golden/evaluation.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.stats
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.manual_seed(0)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def token_samples(seed, count, lengths, vocabulary, first=None, last=None, low=3):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        n = int(rng.integers(lengths[0], lengths[1] + 1))
        ids = [int(x) for x in rng.integers(low, vocabulary, size=n)]
        if first is not None:
            ids[0] = first
        if last is not None:
            ids[-1] = last
        samples.append(ids)
    return samples


def write_tokens(path, samples):
    with open(path, "w") as f:
        for ids in samples:
            f.write(json.dumps(ids) + "\n")


def collect_statistics(model, samples, prefix, skip):
    sums = {}

    def hook(name):
        def run(module, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            entry = sums.setdefault(name, {"count": 0, "sq": 0, "abs": 0, "gram": 0})
            entry["count"] += x.shape[0]
            entry["sq"] = entry["sq"] + (x * x).sum(0)
            entry["abs"] = entry["abs"] + x.abs().sum(0)
            entry["gram"] = entry["gram"] + x.T @ x

        return run

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(s in name for s in skip):
            handles.append(module.register_forward_hook(hook(prefix + name)))
    with torch.no_grad():
        for ids in samples:
            run_model(model, ids)
    for h in handles:
        h.remove()
    tensors = {}
    for name, e in sorted(sums.items()):
        tensors[name + ".input_count"] = torch.tensor([e["count"]], dtype=torch.int64)
        tensors[name + ".input_sum_squares"] = e["sq"].contiguous()
        tensors[name + ".input_mean_abs"] = (e["abs"] / e["count"]).contiguous()
        tensors[name + ".input_gram"] = e["gram"].to(torch.float32).contiguous()
    return tensors


def run_model(model, ids):
    input_ids = torch.tensor([ids])
    mask = torch.ones_like(input_ids)
    if model.config.model_type == "bert":
        return model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids))
    return model(input_ids=input_ids, attention_mask=mask)


def dense_w4a16(swiftcompress, model_dir, work, options):
    quantized = os.path.join(work, "w4a16")
    dense = os.path.join(work, "dense")
    subprocess.run([swiftcompress, "quantize", model_dir, quantized] + options, check=True)
    subprocess.run([swiftcompress, "decompress", quantized, dense], check=True)
    return dense


def decoder_figures(reference, candidate, samples):
    kl, nll_p, nll_q, same = [], [], [], 0
    with torch.no_grad():
        for ids in samples:
            lp = torch.log_softmax(run_model(reference, ids).logits[0].to(torch.float64), dim=-1)
            lq = torch.log_softmax(run_model(candidate, ids).logits[0].to(torch.float64), dim=-1)
            for t in range(len(ids) - 1):
                p = lp[t].exp()
                kl.append(float((p * (lp[t] - lq[t])).sum()))
                nll_p.append(-float(lp[t, ids[t + 1]]))
                nll_q.append(-float(lq[t, ids[t + 1]]))
                same += int(lp[t].argmax() == lq[t].argmax())
    kl = np.array(kl)
    return {
        "positions": len(kl),
        "reference_perplexity": float(np.exp(np.mean(nll_p))),
        "candidate_perplexity": float(np.exp(np.mean(nll_q))),
        "kld": {
            "mean": float(kl.mean()),
            "median": float(np.percentile(kl, 50)),
            "p99": float(np.percentile(kl, 99)),
            "p99.9": float(np.percentile(kl, 99.9)),
            "max": float(kl.max()),
            "min": float(kl.min()),
        },
        "same_top_p": same / len(kl),
    }


def mean_pooled(model, ids):
    with torch.no_grad():
        hidden = run_model(model, ids).last_hidden_state[0]
    return hidden.mean(0).to(torch.float64)


def encoder_figures(reference, candidate, samples):
    p = [mean_pooled(reference, ids) for ids in samples]
    q = [mean_pooled(candidate, ids) for ids in samples]
    cos = [float(torch.dot(a, b) / (a.norm() * b.norm())) for a, b in zip(p, q)]

    def upper(vectors):
        v = torch.stack(vectors)
        v = v / v.norm(dim=1, keepdim=True)
        m = (v @ v.T).numpy()
        return m[np.triu_indices(len(vectors), k=1)]

    rho = scipy.stats.spearmanr(upper(p), upper(q)).statistic
    return {"samples": len(samples), "cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)),
            "spearman": float(rho)}


def metric_goldens(out):
    """metrics.safetensors / metrics.json: the metrics alone, from numpy, on seeded logits and
    embeddings (no model): the Swift test feeds the same arrays through a stand-in model."""
    rng = np.random.default_rng(16)
    lengths = [7, 1, 12, 5]
    vocabulary = 50
    n = sum(lengths)
    reference = (rng.standard_normal((n, vocabulary)) * 3).astype(np.float32)
    candidate = (reference + rng.standard_normal((n, vocabulary)) * 0.3).astype(np.float32)
    candidate[3] = reference[3]  # one position with exactly zero KL
    tokens = rng.integers(0, vocabulary, size=n)
    lp = torch.log_softmax(torch.from_numpy(reference).to(torch.float64), dim=-1).numpy()
    lq = torch.log_softmax(torch.from_numpy(candidate).to(torch.float64), dim=-1).numpy()
    kl, nll_p, nll_q, dp, same = [], [], [], [], 0
    start = 0
    for length in lengths:
        for t in range(start, start + length - 1):
            kl.append(float((np.exp(lp[t]) * (lp[t] - lq[t])).sum()))
            nll_p.append(-lp[t, tokens[t + 1]])
            nll_q.append(-lq[t, tokens[t + 1]])
            dp.append(np.exp(lq[t, tokens[t + 1]]) - np.exp(lp[t, tokens[t + 1]]))
            same += int(lp[t].argmax() == lq[t].argmax())
        start += length
    kl, nll_p, nll_q, dp = map(np.array, (kl, nll_p, nll_q, dp))
    m = len(kl)

    def uncertainty(x):
        return float(np.sqrt(max(0.0, np.mean(x * x) - np.mean(x) ** 2) / (m - 1)))

    top = same / m
    decoder = {
        "positions": m,
        "reference_perplexity": float(np.exp(nll_p.mean())),
        "reference_perplexity_uncertainty": float(np.exp(nll_p.mean()) * uncertainty(nll_p)),
        "candidate_perplexity": float(np.exp(nll_q.mean())),
        "mean_ln_ppl_ratio": float((nll_q - nll_p).mean()),
        "kld": {"mean": float(kl.mean()), "uncertainty": uncertainty(kl), "max": float(kl.max()),
                "min": float(kl.min())},
        "delta_p_mean": float(dp.mean()),
        "same_top_p": top,
        "same_top_p_uncertainty": float(np.sqrt(top * (1 - top) / (m - 1))),
    }
    for name, q in [("p99.9", 99.9), ("p99", 99), ("p95", 95), ("p90", 90), ("median", 50), ("p10", 10),
                    ("p5", 5), ("p1", 1), ("p0.1", 0.1)]:
        decoder["kld"][name] = float(np.percentile(kl, q))
    e_ref = rng.standard_normal((6, 8)).astype(np.float32)
    e_ref[1] = e_ref[0]  # equal vectors: tied pairwise cosines
    e_cand = (e_ref + rng.standard_normal((6, 8)) * 0.2).astype(np.float32)
    a, b = e_ref.astype(np.float64), e_cand.astype(np.float64)
    cos = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))

    def upper(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return (v @ v.T)[np.triu_indices(len(v), k=1)]

    encoder = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
               "spearman": float(scipy.stats.spearmanr(upper(a), upper(b)).statistic)}
    save_file({"reference": torch.from_numpy(reference), "candidate": torch.from_numpy(candidate),
               "tokens": torch.from_numpy(tokens.astype(np.int64)),
               "lengths": torch.tensor(lengths, dtype=torch.int64),
               "embeddings_reference": torch.from_numpy(e_ref), "embeddings_candidate": torch.from_numpy(e_cand)},
              os.path.join(out, "metrics.safetensors"))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"decoder": decoder, "encoder": encoder}, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    swiftcompress = os.path.abspath(sys.argv[1])
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "Fixtures/golden/evaluation")
    os.makedirs(out, exist_ok=True)
    metric_goldens(out)
    cases = [
        ("tiny-llama-f32", AutoModelForCausalLM, token_samples(14, 8, (16, 48), 512, first=1), "", ["lm_head"],
         decoder_figures, ["--scheme", "W4A16"]),
        # BERT's rows have 64 values: groups of 32.
        ("tiny-bert", AutoModel, token_samples(15, 8, (8, 32), 512, first=3, last=4, low=5), "", ["pooler"],
         encoder_figures, ["--scheme", "W4A16", "--group-size", "32"]),
    ]
    for name, cls, samples, prefix, skip, figures, options in cases:
        model_dir = os.path.join(ROOT, "Fixtures", name)
        write_tokens(os.path.join(out, f"tokens.{name}.jsonl"), samples)
        reference = cls.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
        stats = collect_statistics(reference, samples, prefix, skip)
        save_file(stats, os.path.join(out, f"statistics.{name}.safetensors"), metadata={"source": "transformers"})
        with tempfile.TemporaryDirectory() as work:
            dense = dense_w4a16(swiftcompress, model_dir, work, options)
            candidate = cls.from_pretrained(dense, torch_dtype=torch.float32).eval()
            result = figures(reference, candidate, samples)
        result["candidate"] = ["quantize"] + options
        with open(os.path.join(out, f"evaluation.{name}.json"), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
        print(name, json.dumps(result))


if __name__ == "__main__":
    main()
