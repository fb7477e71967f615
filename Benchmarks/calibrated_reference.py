#!/usr/bin/env python3
"""Full-model reference runs of llm-compressor (GPTQ, round-to-nearest, SparseGPT, Wanda)
on the committed fixture models, scored with swiftcompress's own `evaluate`.

Dev-only (needs torch and llm-compressor; not part of `make test`). Reference venv:
/work/venvs/ref (llmcompressor 0.14.0.1, compressed-tensors 0.20.1, torch 2.15.0 CPU,
transformers 5.24.0).

usage:
  python Benchmarks/calibrated_reference.py tokens
      writes Fixtures/golden/calibrated/calibration-tokens.<model>.jsonl and
      evaluation-tokens.<model>.jsonl (committed; deterministic)
  python Benchmarks/calibrated_reference.py run --out DIR --swiftcompress BIN
      [--models llama bert-st] [--methods ...] [--json Benchmarks/results/calibrated-reference.json]
      runs one `oneshot` per (model, method) in its own process (wall time of the oneshot
      call, peak RSS of that process), saves each output under DIR/<model>/<method>
      (save_compressed=True), then `BIN evaluate ORIGINAL CANDIDATE --tokens EVAL --json`.

Models: Fixtures/models/llama (LlamaForCausalLM; lm_head ignored) and
Fixtures/models/bert-st (sentence-transformers BERT, its BertModel weights; pooler.dense
ignored: sentence-transformers never runs it, so it gets no calibration statistics in
swiftcompress either).
"""
import argparse
import importlib.metadata as md
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "Fixtures", "golden", "calibrated")
MODELS = {
    "llama": {"path": os.path.join(ROOT, "Fixtures", "models", "llama"), "cap": 128,
              "ignore": ["lm_head"]},
    "bert-st": {"path": os.path.join(ROOT, "Fixtures", "models", "bert-st"), "cap": 64,
                "ignore": ["pooler.dense"]},
}
SAMPLES = 64
MAX_TOKENS = 128

# method name -> (modifier kind, scheme or mask)
# The fixture models are 64 wide (hidden 64, intermediate 128): the W4A16 presets' group of
# 128 does not divide 64 input columns (compressed-tensors' observer fails, swiftcompress
# refuses), so the integer schemes use the preset's args with group_size 64 (swiftcompress:
# --group-size 64). NVFP4 (16) and MXFP4 (32) keep their presets.
INT_GROUP = 64
METHODS = {
    "gptq-w4a16-g64": ("gptq", "W4A16"),
    "gptq-w4a16-asym-g64": ("gptq", "W4A16_ASYM"),
    "gptq-nvfp4a16": ("gptq", "NVFP4A16"),
    "gptq-mxfp4a16": ("gptq", "MXFP4A16"),
    "rtn-w4a16-g64": ("rtn", "W4A16"),
    "rtn-w4a16-asym-g64": ("rtn", "W4A16_ASYM"),
    "rtn-nvfp4a16": ("rtn", "NVFP4A16"),
    "rtn-mxfp4a16": ("rtn", "MXFP4A16"),
    "sparsegpt-2of4": ("sparsegpt", "2:4"),
    "wanda-2of4": ("wanda", "2:4"),
}


def versions():
    out = {}
    for name in ["llmcompressor", "compressed-tensors", "torch", "transformers", "tokenizers",
                 "safetensors", "datasets"]:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


# ---------------------------------------------------------------- token files


def token_paths(model):
    return (
        os.path.join(GOLDEN, f"calibration-tokens.{model}.jsonl"),
        os.path.join(GOLDEN, f"evaluation-tokens.{model}.jsonl"),
    )


def make_samples(tokenizer, lines, cap):
    """Consecutive corpus lines joined with a space until the sample reaches `cap`
    tokens (special tokens included), then cut by the tokenizer's own truncation to
    `cap` (BERT keeps its final [SEP]). SAMPLES samples."""
    tokenizer.enable_truncation(max_length=cap)
    samples = []
    i = 0
    while len(samples) < SAMPLES:
        text = lines[i]
        i += 1
        tokenizer.no_truncation()
        while len(tokenizer.encode(text, add_special_tokens=True).ids) < cap and i < len(lines):
            text = text + " " + lines[i]
            i += 1
        tokenizer.enable_truncation(max_length=cap)
        samples.append(tokenizer.encode(text, add_special_tokens=True).ids)
    return samples, i


def cmd_tokens(_args):
    from tokenizers import Tokenizer

    with open(os.path.join(ROOT, "Fixtures", "text", "corpus.txt"), encoding="utf-8") as f:
        lines = [line.rstrip("\r") for line in f.read().split("\n")]
    lines = [line for line in lines if line.strip()]
    half = len(lines) // 2
    os.makedirs(GOLDEN, exist_ok=True)
    for model, spec in MODELS.items():
        tok = Tokenizer.from_file(os.path.join(spec["path"], "tokenizer.json"))
        cap = min(MAX_TOKENS, spec["cap"])
        calib, used_c = make_samples(tok, lines[:half], cap)
        evals, used_e = make_samples(tok, lines[half:], cap)
        for path, samples in zip(token_paths(model), (calib, evals)):
            with open(path, "w") as f:
                for ids in samples:
                    f.write(json.dumps(ids, separators=(",", ":")) + "\n")
        print(model, f"cap {cap}: calibration {len(calib)} samples from non-blank lines "
              f"0..{used_c - 1}, {sum(map(len, calib))} tokens; evaluation {len(evals)} "
              f"samples from non-blank lines {half}..{half + used_e - 1}, "
              f"{sum(map(len, evals))} tokens")


def read_tokens(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- one oneshot run


def quant_kwargs(preset):
    """scheme=PRESET, or for the integer presets config_groups with the preset's weight
    args and group_size INT_GROUP."""
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationScheme,
        preset_name_to_scheme,
    )

    if preset not in ("W4A16", "W4A16_ASYM"):
        return {"targets": "Linear", "scheme": preset}
    weights = preset_name_to_scheme(preset, ["Linear"]).weights
    weights = QuantizationArgs.model_validate({**weights.model_dump(), "group_size": INT_GROUP})
    return {"config_groups": {"group_0": QuantizationScheme(targets=["Linear"],
                                                            weights=weights)}}


def build_recipe(method, ignore):
    kind, arg = METHODS[method]
    if kind == "gptq":
        from llmcompressor.modifiers.gptq import GPTQModifier

        return GPTQModifier(ignore=ignore, **quant_kwargs(arg))
    if kind == "rtn":
        from llmcompressor.modifiers.quantization import QuantizationModifier

        return QuantizationModifier(ignore=ignore, **quant_kwargs(arg))
    if kind == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        return SparseGPTModifier(sparsity=0.5, mask_structure=arg, targets=["Linear"],
                                 ignore=ignore)
    if kind == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        return WandaPruningModifier(sparsity=0.5, mask_structure=arg, targets=["Linear"],
                                    ignore=ignore)
    raise ValueError(method)


def cmd_one(args):
    """Child process: one oneshot call; writes a JSON with its wall time and peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from datasets import Dataset
    from transformers import AutoModel, AutoModelForCausalLM

    from llmcompressor import oneshot

    spec = MODELS[args.model]
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids = read_tokens(token_paths(args.model)[0])
    walls = []
    for repeat in range(args.repeats):
        # a fresh model and recipe each time; the last run's model is saved
        if args.model == "llama":
            model = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=torch.float32)
        else:
            model = AutoModel.from_pretrained(spec["path"], dtype=torch.float32,
                                              add_pooling_layer=True)
        ds = Dataset.from_dict(
            {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
        )
        recipe = build_recipe(args.method, spec["ignore"])
        if repeat == 0:
            rss_loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        oneshot(
            model=model,
            dataset=ds,
            recipe=recipe,
            num_calibration_samples=len(ids),
            shuffle_calibration_samples=False,
            batch_size=1,
            pipeline="sequential",
            output_dir=None,
        )
        walls.append(time.perf_counter() - start)
        if repeat == 0:
            rss_first_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    save_start = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, save_compressed=True)
    save_wall = time.perf_counter() - save_start
    # everything but the weights and config from the original folder (tokenizer,
    # sentence-transformers modules) so the output is a complete model folder
    for name in os.listdir(spec["path"]):
        src = os.path.join(spec["path"], name)
        dst = os.path.join(args.out, name)
        if name in ("model.safetensors", "config.json") or os.path.exists(dst):
            continue
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    result = {
        "model": args.model,
        "method": args.method,
        "oneshot_seconds": round(min(walls), 3),
        "oneshot_seconds_all": [round(w, 3) for w in walls],
        "save_seconds": round(save_wall, 3),
        "peak_rss_mib": round(rss_first_kb / 1024, 1),
        "peak_rss_all_repeats_mib": round(rss_after_kb / 1024, 1),
        "rss_before_model_mib": round(rss_before_kb / 1024, 1),
        "rss_model_loaded_mib": round(rss_loaded_kb / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "calibration_samples": len(ids),
        "calibration_tokens": sum(map(len, ids)),
    }
    with open(args.result, "w") as f:
        json.dump(result, f, indent=2)


# ---------------------------------------------------------------- scoring


def evaluate(binary, original, candidate, tokens):
    proc = subprocess.run(
        [binary, "evaluate", original, candidate, "--tokens", tokens, "--json"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        return None, proc.stderr.strip()[-2000:]
    return json.loads(proc.stdout), None


def decompress_dense(candidate, dense_out):
    """Dense F32 copy of a compressed-tensors checkpoint via compressed-tensors'
    ModelCompressor.decompress (when swiftcompress cannot read the layout)."""
    code = r"""
import sys, os, shutil, torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
src, dst = sys.argv[1], sys.argv[2]
cfg = AutoConfig.from_pretrained(src)
cls = AutoModelForCausalLM if cfg.architectures[0].endswith("ForCausalLM") else AutoModel
model = cls.from_pretrained(src, dtype=torch.float32)
from compressed_tensors.compressors import ModelCompressor
mc = ModelCompressor.from_pretrained(src)
if mc is not None:
    mc.decompress_model(model)
sd = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
os.makedirs(dst, exist_ok=True)
model.config.quantization_config = None
model.save_pretrained(dst, state_dict=sd)
for name in os.listdir(src):
    s, d = os.path.join(src, name), os.path.join(dst, name)
    if os.path.exists(d):
        continue
    shutil.copytree(s, d) if os.path.isdir(s) else shutil.copy2(s, d)
"""
    proc = subprocess.run([sys.executable, "-c", code, candidate, dense_out],
                          capture_output=True, text=True)
    return proc.returncode == 0, proc.stderr.strip()[-2000:]


def summarize(report):
    if report is None:
        return None
    if "decoder" in report:
        d = report["decoder"]
        return {
            "kld_mean": d["kld"]["mean"],
            "kld_p99": d["kld"].get("p99"),
            "kld_max": d["kld"].get("max"),
            "same_top_p": d["same_top_p"]["mean"],
            "reference_perplexity": d.get("reference_perplexity"),
            "candidate_perplexity": d.get("candidate_perplexity"),
            "positions": d.get("positions"),
        }
    e = report["encoder"]
    return {k: e.get(k) for k in ("cosine_mean", "cosine_min", "spearman", "samples")}


def cmd_run(args):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    rows = []
    for model in args.models:
        spec = MODELS[model]
        eval_tokens = token_paths(model)[1]
        for method in args.methods:
            cand = os.path.join(out, model, method)
            result_path = os.path.join(out, model, f"{method}.oneshot.json")
            os.makedirs(os.path.dirname(cand), exist_ok=True)
            if os.path.exists(cand):
                shutil.rmtree(cand)
            print(f"== {model} {method}", flush=True)
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "_one", "--model", model,
                 "--method", method, "--out", cand, "--result", result_path,
                 "--repeats", str(args.repeats), "--threads", str(args.threads)],
                capture_output=True, text=True,
            )
            with open(os.path.join(out, model, f"{method}.log"), "w") as f:
                f.write(proc.stdout + proc.stderr)
            row = {"model": model, "method": method, "kind": METHODS[method][0],
                   "scheme": METHODS[method][1]}
            if proc.returncode != 0:
                row["error"] = "oneshot failed: " + proc.stderr.strip()[-1500:]
                print(row["error"], flush=True)
                rows.append(row)
                continue
            with open(result_path) as f:
                row.update(json.load(f))
            with open(os.path.join(cand, "config.json")) as f:
                qc = json.load(f).get("quantization_config") or {}
            row["checkpoint_format"] = qc.get("format") or "dense"
            if qc.get("sparsity_config"):
                row["sparsity_format"] = qc["sparsity_config"].get("format")
            report, err = evaluate(args.swiftcompress, spec["path"], cand, eval_tokens)
            row["evaluated"] = "compressed output as saved"
            if report is None:
                row["swiftcompress_load_error"] = err
                dense = cand + "-dense"
                ok, derr = decompress_dense(cand, dense)
                if not ok:
                    row["error"] = "decompression failed: " + derr
                    rows.append(row)
                    continue
                report, err = evaluate(args.swiftcompress, spec["path"], dense, eval_tokens)
                row["evaluated"] = "dense copy decompressed by compressed-tensors"
                if report is None:
                    row["error"] = "evaluate failed on the dense copy: " + err
            row["scores"] = summarize(report)
            if report is not None:
                row["data"] = dict(report.get("data") or {})
                if str(row["data"].get("file", "")).startswith(ROOT):
                    row["data"]["file"] = os.path.relpath(row["data"]["file"], ROOT)
            print(json.dumps({k: row.get(k) for k in ("oneshot_seconds", "peak_rss_mib",
                                                        "evaluated", "scores")}), flush=True)
            rows.append(row)
    doc = {
        "description": "llm-compressor oneshot (sequential pipeline, CPU) on the fixture "
                       "models, scored by swiftcompress evaluate against the original",
        "versions": versions(),
        "swiftcompress": args.swiftcompress,
        "machine": {"cpus": os.cpu_count()},
        "calibration_tokens": {m: os.path.relpath(token_paths(m)[0], ROOT) for m in args.models},
        "evaluation_tokens": {m: os.path.relpath(token_paths(m)[1], ROOT) for m in args.models},
        "settings": {
            "integer_group_size": INT_GROUP,
            "gptq": "GPTQModifier(targets=Linear, scheme=S): block_size 128, dampening_frac "
                    "0.01, actorder static (defaults); observer memoryless_minmax",
            "rtn": "QuantizationModifier(targets=Linear, scheme=S)",
            "sparsegpt": "SparseGPTModifier(sparsity=0.5, mask_structure='2:4'): block 128, "
                         "dampening 0.01",
            "wanda": "WandaPruningModifier(sparsity=0.5, mask_structure='2:4')",
            "ignore": {m: MODELS[m]["ignore"] for m in args.models},
            "oneshot": "pipeline=sequential, batch_size=1, shuffle_calibration_samples=False, "
                       "num_calibration_samples=64, save_compressed=True",
            "timing": "oneshot_seconds is the minimum over the repeats (each on a freshly "
                      "loaded model) of the wall time of the oneshot call alone; peak_rss_mib "
                      "is the process's ru_maxrss after the first oneshot (includes the "
                      "python/torch/llmcompressor baseline, rss_model_loaded_mib)",
        },
        "runs": rows,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return doc


def cmd_native(args):
    """swiftcompress's own round-to-nearest quantize (the same schemes, integer groups of
    INT_GROUP) and Wanda 2:4 (calibrate on the dense model, then prune), scored the same
    way; added to the results JSON under `swiftcompress_native`."""
    with open(args.results) as f:
        doc = json.load(f)
    out = os.path.abspath(args.out)
    rows = []
    for model in dict.fromkeys(r["model"] for r in doc["runs"]):
        spec = MODELS[model]
        calib, eval_tokens = token_paths(model)
        ignore = []
        for name in spec["ignore"]:
            ignore += ["--ignore", name]
        jobs = {}
        for scheme in ("W4A16", "W4A16_ASYM", "NVFP4A16", "MXFP4A16"):
            extra = ["--group-size", str(INT_GROUP)] if scheme.startswith("W4") else []
            name = f"swiftcompress-rtn-{scheme.lower().replace('_', '-')}" + (
                f"-g{INT_GROUP}" if extra else "")
            jobs[name] = [["quantize", spec["path"], None, "--scheme", scheme, *extra,
                           *ignore]]
        stats = os.path.join(out, model, "swiftcompress-calibration.safetensors")
        jobs["swiftcompress-wanda-2of4"] = [
            ["calibrate", spec["path"], "--tokens", calib, "-o", stats],
            ["prune", spec["path"], None, "--method", "wanda", "--pattern", "2:4",
             "--calibration", stats, *ignore],
        ]
        for name, steps in jobs.items():
            cand = os.path.join(out, model, name)
            os.makedirs(os.path.dirname(cand), exist_ok=True)
            if os.path.exists(cand):
                shutil.rmtree(cand)
            row = {"model": model, "method": name}
            for step in steps:
                argv = [args.swiftcompress] + [cand if a is None else a for a in step]
                row.setdefault("commands", []).append(" ".join(
                    os.path.relpath(a, ROOT) if a.startswith(ROOT) else
                    ("swiftcompress" if a == args.swiftcompress else a)
                    for a in argv))
                proc = subprocess.run(argv, capture_output=True, text=True)
                if proc.returncode != 0:
                    row["error"] = proc.stderr.strip()[-1000:]
                    break
            if "error" not in row:
                report, err = evaluate(args.swiftcompress, spec["path"], cand, eval_tokens)
                row["scores"] = summarize(report)
                if err:
                    row["error"] = err
            print(json.dumps(row)[:300], flush=True)
            rows.append(row)
    doc["swiftcompress_native"] = rows
    with open(args.results, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def cmd_table(args):
    """Markdown table of a results JSON (docs/calibrated.md's table)."""
    with open(args.results) as f:
        doc = json.load(f)
    lines = []
    for model in dict.fromkeys(r["model"] for r in doc["runs"]):
        runs = [r for r in doc["runs"] if r["model"] == model]
        decoder = any((r.get("scores") or {}).get("kld_mean") is not None for r in runs)
        if decoder:
            lines += [f"### {model}", "",
                      "| method | format | mean KLD | KLD p99 | same top p | PPL(Q) / PPL(base) "
                      "| oneshot s | peak RSS MiB (before oneshot) | evaluated |",
                      "|---|---|---|---|---|---|---|---|---|"]
        else:
            lines += [f"### {model}", "",
                      "| method | format | mean cosine | min cosine | Spearman | oneshot s "
                      "| peak RSS MiB (before oneshot) | evaluated |",
                      "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            sc = r.get("scores") or {}
            fmt = r.get("sparsity_format") or r.get("checkpoint_format") or ""
            how = "as saved" if r.get("evaluated", "").startswith("compressed") else (
                "dense (decompressed)" if r.get("evaluated") else "error")
            if "error" in r and not sc:
                lines.append(f"| {r['method']} | {fmt} | error: {r['error'][:80]} |")
                continue
            if decoder:
                ppl = (f"{sc['candidate_perplexity']['mean']:.1f} / "
                       f"{sc['reference_perplexity']['mean']:.1f}")
                lines.append(
                    f"| {r['method']} | {fmt} | {sc['kld_mean']:.5f} | {sc['kld_p99']:.4f} | "
                    f"{100 * sc['same_top_p']:.1f} % | {ppl} | {r['oneshot_seconds']:.1f} | "
                    f"{r['peak_rss_mib']:.0f} ({r['rss_model_loaded_mib']:.0f}) | {how} |")
            else:
                sp = "" if sc.get("spearman") is None else f"{sc['spearman']:.5f}"
                lines.append(
                    f"| {r['method']} | {fmt} | {sc['cosine_mean']:.5f} | "
                    f"{sc['cosine_min']:.5f} | {sp} | {r['oneshot_seconds']:.1f} | "
                    f"{r['peak_rss_mib']:.0f} ({r['rss_model_loaded_mib']:.0f}) | {how} |")
        lines.append("")
        native = [r for r in doc.get("swiftcompress_native", []) if r["model"] == model]
        if native:
            lines += [f"swiftcompress's own commands on {model}, scored the same way:", ""]
            if decoder:
                lines += ["| method | mean KLD | KLD p99 | same top p |", "|---|---|---|---|"]
            else:
                lines += ["| method | mean cosine | min cosine | Spearman |",
                          "|---|---|---|---|"]
            for r in native:
                sc = r.get("scores") or {}
                if not sc:
                    lines.append(f"| {r['method']} | error: {r.get('error', '')[:80]} | | |")
                elif decoder:
                    lines.append(f"| {r['method']} | {sc['kld_mean']:.5f} | "
                                 f"{sc['kld_p99']:.4f} | {100 * sc['same_top_p']:.1f} % |")
                else:
                    lines.append(f"| {r['method']} | {sc['cosine_mean']:.5f} | "
                                 f"{sc['cosine_min']:.5f} | {sc['spearman']:.5f} |")
            lines.append("")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("tokens")
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--swiftcompress", required=True)
    r.add_argument("--models", nargs="+", default=list(MODELS))
    r.add_argument("--methods", nargs="+", default=list(METHODS))
    r.add_argument("--repeats", type=int, default=3,
                   help="oneshot calls per (model, method), each on a fresh model; the "
                        "minimum wall time is reported, the last output is saved")
    r.add_argument("--threads", type=int, default=1,
                   help="torch threads in each oneshot process (1: stable timings on a "
                        "shared machine)")
    r.add_argument("--json", default=os.path.join(ROOT, "Benchmarks", "results",
                                                  "calibrated-reference.json"))
    n = sub.add_parser("native")
    n.add_argument("results")
    n.add_argument("--out", required=True)
    n.add_argument("--swiftcompress", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    o = sub.add_parser("_one")
    o.add_argument("--model", required=True)
    o.add_argument("--method", required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--result", required=True)
    o.add_argument("--repeats", type=int, default=3)
    o.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    {"tokens": cmd_tokens, "run": cmd_run, "table": cmd_table, "native": cmd_native, "_one": cmd_one}[args.cmd](args)


if __name__ == "__main__":
    main()
