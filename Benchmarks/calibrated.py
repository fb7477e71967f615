#!/usr/bin/env python3
"""Issue 15's quality and speed comparison: llm-compressor's GPTQ / SparseGPT / Wanda
(oneshot, sequential pipeline, CPU) against swiftcompress's calibrated options, on the same
calibration tokens, scored on the same held-out tokens with `swiftcompress evaluate`, with
wall times and peak RSS. Reuses Benchmarks/calibrated_reference.py (token files, recipes,
scoring). Dev-only (torch + llmcompressor); `make bench-calibrated` runs it.

usage:
  PYTHON Benchmarks/calibrated.py run --swiftcompress BIN --out DIR
      [--models llama bert-st] [--threads 1] [--repeats 3] [--large-model DIR]
      [--large-samples 16] [--large-tokens 128] [--large-repeats 3] [--large-ref-repeats 3]
      [--json Benchmarks/results/calibrated.json]
  PYTHON Benchmarks/calibrated.py ours --swiftcompress BIN --out DIR [--models ...]
      [--threads 1] [--repeats 3] [--json Benchmarks/results/calibrated.json]
  PYTHON Benchmarks/calibrated.py table [Benchmarks/results/calibrated.json]

`ours` reruns only swiftcompress's fixture options into an existing results JSON (the
llm-compressor rows and the large-model section are kept as they were measured).

swiftcompress's options: GPTQ with --refit ls and none (the default), each with --actorder
static|none and --scale-search none|mse; SparseGPT and Wanda 2:4 with --refit ls and none. The
like-for-like option is llm-compressor's algorithm and settings: GPTQ actorder static, no
scale search, --refit none; SparseGPT / Wanda --refit none.

Noise (encoders): a mean cosine over the 64 held-out samples differs from another by a
deterministic amount, so "noise" here is what another choice of samples would give: for each
BERT comparison the best option and the like-for-like one (whose scores equal
llm-compressor's, see docs/calibrated.md) are evaluated on each held-out sample alone, and the
paired differences' mean, standard error and sign count are recorded (`noise`).

Timing: swiftcompress is the whole CLI process (load, calibration, algorithm, write), the
best of --repeats fresh processes. llm-compressor: each of --repeats fresh processes runs
one oneshot on a freshly loaded model; reported are the best oneshot call alone (as
calibrated_reference.py) and the best whole process (interpreter start, imports, model
load, oneshot, save). Peak RSS: ru_maxrss of that one child (os.wait4), the maximum over
its repeats. Both tools get the same thread count (--threads: torch.set_num_threads,
swiftcompress --jobs, OPENBLAS_NUM_THREADS / OMP_NUM_THREADS).
"""
import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import calibrated_reference as ref  # noqa: E402

ROOT = ref.ROOT
SCHEMES = ["W4A16", "W4A16_ASYM", "NVFP4A16", "MXFP4A16"]
PRUNERS = ["sparsegpt", "wanda"]
# --refit ls (opt-in: least-squares refit after the grid / mask is fixed) and none (the default)
# (the method's own values, llm-compressor's)
REFITS = ["ls", "none"]
REFIT_SUFFIX = {"ls": "", "none": "-refit-none"}
SWIFT_SETTINGS = ("quantize --method gptq --tokens CAL [--group-size G] --scale-search none|mse "
                  "--actorder static|none --refit ls|none; prune --method sparsegpt|wanda "
                  "--pattern 2:4 --tokens CAL --refit ls|none; --jobs THREADS")


def slug(scheme):
    return scheme.lower().replace("_", "-")


def rel(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def thread_env(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def timed(argv, env=None, log=None):
    """Runs argv as a fresh child; (returncode, wall seconds, peak RSS MiB of that child)."""
    out = open(log, "w") if log else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = ""
    if not log and proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")
    if log:
        out.close()
        with open(log) as f:
            err = f.read()
    return proc.returncode, wall, usage.ru_maxrss / 1024, err


def load():
    return [os.getloadavg()[0], os.getloadavg()[1], os.getloadavg()[2]]


# ---------------------------------------------------------------- llm-compressor child


def cmd_forward_child(args):
    """One fresh process: transformers' forward of the decoder body (no head) over the
    calibration samples one at a time (as oneshot's batch_size=1 pipeline feeds them), best of
    three; prints {"forward_seconds": ...}. The sequential pipeline runs each layer twice (gather,
    then propagate), so 2x this is the forward work inside llm-compressor's oneshot."""
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    ids = ref.read_tokens(args.tokens)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    best = None
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            for x in ids:
                model.model(input_ids=torch.tensor([x]))
            took = time.perf_counter() - start
            best = took if best is None else min(best, took)
    with open(args.result, "w") as f:
        json.dump({"forward_seconds": round(best, 3)}, f)


def cmd_ref_child(args):
    """One fresh process: imports, loads, runs one oneshot, saves; prints the oneshot time."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from datasets import Dataset
    from transformers import AutoModel, AutoModelForCausalLM

    from llmcompressor import oneshot

    ref.INT_GROUP = args.group
    ids = ref.read_tokens(args.tokens)
    if args.causal:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    else:
        model = AutoModel.from_pretrained(args.model, dtype=torch.float32, add_pooling_layer=True)
    ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})
    recipe = ref.build_recipe(args.method, args.ignore)
    extra = {}
    if not os.path.exists(os.path.join(args.model, "tokenizer.json")):
        # the generated model has no tokenizer and oneshot insists on a processor; the data
        # is already token ids, so any Llama tokenizer does (the fixture's; it is not used)
        extra["tokenizer"] = ref.MODELS["llama"]["path"]
    start = time.perf_counter()
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=len(ids), **extra,
            shuffle_calibration_samples=False, batch_size=1, pipeline="sequential",
            output_dir=None)
    oneshot_s = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out, save_compressed=True)
    for name in os.listdir(args.model):
        src, dst = os.path.join(args.model, name), os.path.join(args.out, name)
        if name in ("model.safetensors", "config.json") or os.path.exists(dst):
            continue
        shutil.copytree(src, dst) if os.path.isdir(src) else shutil.copy2(src, dst)
    with open(args.result, "w") as f:
        json.dump({"oneshot_seconds": oneshot_s, "torch_threads": torch.get_num_threads()}, f)


def run_reference(method, model_path, causal, ignore, tokens, out, group, threads, repeats, logdir):
    walls, oneshots, rss = [], [], 0.0
    for i in range(repeats):
        if os.path.exists(out):
            shutil.rmtree(out)
        result = os.path.join(logdir, f"{os.path.basename(out)}.{i}.json")
        argv = [sys.executable, os.path.abspath(__file__), "_ref", "--method", method,
                "--model", model_path, "--tokens", tokens, "--out", out, "--result", result,
                "--group", str(group), "--threads", str(threads), "--ignore", *ignore]
        if causal:
            argv.append("--causal")
        rc, wall, peak, err = timed(argv, env=thread_env(threads),
                                    log=os.path.join(logdir, f"{os.path.basename(out)}.{i}.log"))
        if rc != 0:
            return {"error": "oneshot failed: " + err.strip()[-1500:]}
        with open(result) as f:
            oneshots.append(json.load(f)["oneshot_seconds"])
        walls.append(wall)
        rss = max(rss, peak)
        print(f"   llm-compressor {method} run {i}: oneshot {oneshots[-1]:.2f} s, "
              f"process {wall:.2f} s, peak RSS {peak:.0f} MiB", flush=True)
    return {"oneshot_seconds": round(min(oneshots), 3),
            "oneshot_seconds_all": [round(x, 3) for x in oneshots],
            "process_seconds": round(min(walls), 3),
            "process_seconds_all": [round(x, 3) for x in walls],
            "peak_rss_mib": round(rss, 1)}


# ---------------------------------------------------------------- swiftcompress


def swift_options(model, tokens, ignore, group):
    """option name -> argv after BIN (output placeholder None)."""
    ig = []
    for name in ignore:
        ig += ["--ignore", name]
    opts = {}
    for scheme in SCHEMES:
        grp = ["--group-size", str(group)] if scheme.startswith("W4") else []
        for refit in REFITS:
            for search in ("none", "mse"):
                for order in ("static", "none"):
                    name = (f"gptq-{slug(scheme)}-actorder-{order}"
                            + ("-mse" if search == "mse" else "") + REFIT_SUFFIX[refit])
                    opts[name] = {"scheme": scheme, "kind": "gptq", "scale_search": search,
                                  "actorder": order, "refit": refit,
                                  "argv": ["quantize", model, None, "--scheme", scheme, *grp,
                                           "--method", "gptq", "--tokens", tokens,
                                           "--scale-search", search, "--actorder", order,
                                           "--refit", refit, *ig]}
    for pruner in PRUNERS:
        for refit in REFITS:
            opts[f"{pruner}-2of4" + REFIT_SUFFIX[refit]] = {
                "scheme": "2:4", "kind": pruner, "refit": refit,
                "argv": ["prune", model, None, "--method", pruner, "--pattern", "2:4",
                         "--tokens", tokens, "--refit", refit, *ig]}
    return opts


def run_swift(binary, argv, out, threads, repeats, logdir):
    walls, rss = [], 0.0
    full = [binary] + [out if a is None else a for a in argv] + ["--jobs", str(threads)]
    for i in range(repeats):
        if os.path.exists(out):
            shutil.rmtree(out)
        rc, wall, peak, err = timed(full, env=thread_env(threads),
                                    log=os.path.join(logdir, f"{os.path.basename(out)}.{i}.log"))
        if rc != 0:
            return {"error": err.strip()[-1500:]}
        walls.append(wall)
        rss = max(rss, peak)
    return {"process_seconds": round(min(walls), 3),
            "process_seconds_all": [round(x, 3) for x in walls],
            "peak_rss_mib": round(rss, 1),
            "command": " ".join("swiftcompress" if a == binary else rel(a) for a in full)}


# ---------------------------------------------------------------- fixtures


def fixture_runs(args, model):
    spec = ref.MODELS[model]
    calib, evals = ref.token_paths(model)
    causal = model == "llama"
    group = ref.INT_GROUP
    work = os.path.join(os.path.abspath(args.out), model)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    rows = []
    if getattr(args, "ours_only", False):
        return rows + swift_fixture_runs(args, model, spec, calib, evals, group, work, logs)
    # llm-compressor: method name of calibrated_reference.METHODS per (kind, scheme)
    refs = {("gptq", s): f"gptq-{slug(s)}" + ("-g64" if s.startswith("W4") else "")
            for s in SCHEMES}
    refs[("sparsegpt", "2:4")] = "sparsegpt-2of4"
    refs[("wanda", "2:4")] = "wanda-2of4"
    for (kind, scheme), method in refs.items():
        cand = os.path.join(work, "llm-compressor-" + method)
        print(f"== {model} llm-compressor {method}", flush=True)
        row = {"model": model, "tool": "llm-compressor", "option": method, "kind": kind,
               "scheme": scheme, "load_before": load()}
        row.update(run_reference(method, spec["path"], causal, spec["ignore"], calib, cand,
                                 group, args.threads, args.repeats, logs))
        if "error" not in row:
            report, err = ref.evaluate(args.swiftcompress, spec["path"], cand, evals)
            row["scores"] = ref.summarize(report)
            if err:
                row["error"] = "evaluate: " + err
        rows.append(row)
    return rows + swift_fixture_runs(args, model, spec, calib, evals, group, work, logs)


def swift_fixture_runs(args, model, spec, calib, evals, group, work, logs):
    rows = []
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    for name, opt in swift_options(spec["path"], calib, spec["ignore"], group).items():
        cand = os.path.join(work, "swiftcompress-" + name)
        print(f"== {model} swiftcompress {name}", flush=True)
        row = {"model": model, "tool": "swiftcompress", "option": name, "kind": opt["kind"],
               "scheme": opt["scheme"], "scale_search": opt.get("scale_search"),
               "actorder": opt.get("actorder"), "refit": opt.get("refit"),
               "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "swiftcompress_commit": commit, "load_before": load()}
        row.update(run_swift(args.swiftcompress, opt["argv"], cand, args.threads,
                             args.repeats, logs))
        if "error" not in row:
            report, err = ref.evaluate(args.swiftcompress, spec["path"], cand, evals)
            row["scores"] = ref.summarize(report)
            if err:
                row["error"] = "evaluate: " + err
        print("   " + json.dumps({k: row.get(k) for k in ("process_seconds", "peak_rss_mib",
                                                          "error")}), flush=True)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- large generated model


def layer_bound(config, samples, tokens, batch_tokens):
    h = config["hidden_size"]
    inter = config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads", heads)
    hd = config.get("head_dim") or h // heads
    layer_params = (h * heads * hd + 2 * h * kv * hd + heads * hd * h  # q, k, v, o
                    + 3 * h * inter + 2 * h)  # gate, up, down, two norms
    batch = min(batch_tokens, samples * tokens)
    parts = {
        "layer_weights": layer_params * 4,
        "calibration_activations": samples * tokens * h * 4,
        "largest_intermediate": max(batch * inter * 4, heads * tokens * tokens * 4,
                                    batch * heads * hd * 4),
        "largest_hessian": max(h, inter) ** 2 * 8,
        "slack": 64 * 2 ** 20,
    }
    parts["total"] = sum(parts.values())
    # The same bound read as the whole working set of one layer: every activation array one
    # batch of the layer's forward holds (hidden, x, q, k, v, context, o; x, gate, up, down),
    # all the calibration hidden states, and every H of the layer (its inputs' Double sums, all
    # gathered in the same forward, plus one batch's Float32 XᵀX).
    widths = 6 * h + 2 * kv * hd + 2 * inter
    full = {
        "layer_weights": layer_params * 4,
        "calibration_activations": samples * tokens * h * 4 + batch * widths * 4,
        "layer_hessians": (3 * h * h + inter * inter) * 8 + max(h, inter) ** 2 * 4,
        "slack": 64 * 2 ** 20,
    }
    full["total"] = sum(full.values())
    parts["whole_layer_reading"] = full
    return parts


def large_quality(args, model, config, work, tokens, group):
    """Mean KLD on held-out random tokens (8 x the calibration length, random.Random(1515)) of
    llm-compressor's GPTQ, swiftcompress's like for like, its GPTQ with --scale-search mse, and
    its like for like at dampening 0.0099 / 0.0101 (GPTQ's own spread on this model)."""
    evals = os.path.join(work, "evaluation-tokens.jsonl")
    rng = random.Random(1515)
    with open(evals, "w") as f:
        for _ in range(8):
            f.write(json.dumps([rng.randrange(config["vocab_size"])
                                for _ in range(args.large_tokens)]) + "\n")
    base = ["quantize", model, None, "--scheme", "W4A16", "--group-size", str(group),
            "--method", "gptq", "--tokens", tokens, "--refit", "none", "--ignore", "lm_head",
            "--jobs", str(args.threads)]
    variants = {"swiftcompress_gptq_scale_search_mse": ["--scale-search", "mse"],
                "swiftcompress_gptq_dampening_0.0099": ["--dampening", "0.0099"],
                "swiftcompress_gptq_dampening_0.0101": ["--dampening", "0.0101"]}
    candidates = {"llm_compressor_gptq": os.path.join(work, "llm-compressor-gptq"),
                  "swiftcompress_gptq_refit_none": os.path.join(work, "swiftcompress-gptq")}
    result = {"evaluation": f"8 x {args.large_tokens} random token ids, random.Random(1515)",
              "mean_kld": {}}
    for name, extra in variants.items():
        out = os.path.join(work, name)
        if os.path.exists(out):
            shutil.rmtree(out)
        proc = subprocess.run([args.swiftcompress] + [out if a is None else a for a in base] + extra,
                              capture_output=True, text=True, env=thread_env(args.threads))
        if proc.returncode != 0:
            result["mean_kld"][name] = {"error": proc.stderr.strip()[-800:]}
            continue
        candidates[name] = out
    for name, path in candidates.items():
        report, err = ref.evaluate(args.swiftcompress, model, path, evals)
        result["mean_kld"][name] = ref.summarize(report)["kld_mean"] if report else {"error": err}
    print("   " + json.dumps(result), flush=True)
    return result


def large_runs(args):
    model = os.path.abspath(args.large_model)
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_bench_model.py"),
                        model], check=True)
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    work = os.path.join(os.path.abspath(args.out), "large")
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    tokens = os.path.join(work, "calibration-tokens.jsonl")
    rng = random.Random(15)
    with open(tokens, "w") as f:
        for _ in range(args.large_samples):
            f.write(json.dumps([rng.randrange(config["vocab_size"])
                                for _ in range(args.large_tokens)]) + "\n")
    group = 128
    ignore = ["lm_head"]
    out = {"model": rel(model), "parameters_note": "Scripts/make_bench_model.py (random weights)",
           "config": {k: config.get(k) for k in ("hidden_size", "intermediate_size",
                                                 "num_hidden_layers", "num_attention_heads",
                                                 "num_key_value_heads", "vocab_size")},
           "samples": args.large_samples, "tokens_per_sample": args.large_tokens,
           "scheme": "W4A16", "group_size": group}
    print("== large swiftcompress gptq W4A16 g128", flush=True)
    # like for like with llm-compressor's GPTQ: --refit none (the refit's own cost on this
    # model is in docs/calibration.md)
    argv = ["quantize", model, None, "--scheme", "W4A16", "--group-size", str(group),
            "--method", "gptq", "--tokens", tokens, "--refit", "none", "--ignore", "lm_head"]
    sc = {"load_before": load()}
    sc.update(run_swift(args.swiftcompress, argv, os.path.join(work, "swiftcompress-gptq"),
                        args.threads, args.large_repeats, logs))
    print("   " + json.dumps(sc), flush=True)
    # Where swiftcompress's time goes: the calibration note of its last run splits it.
    logs_seen = sorted(f for f in os.listdir(logs) if f.startswith("swiftcompress-gptq."))
    if logs_seen and "error" not in sc:
        with open(os.path.join(logs, logs_seen[-1])) as f:
            m = re.search(r"in ([0-9.]+) s \(forward passes ([0-9.]+) s, statistics ([0-9.]+) s, "
                          r"gptq ([0-9.]+) s\)", f.read())
        if m:
            sc["calibration_split_seconds"] = {
                "calibration": float(m.group(1)), "forward_passes": float(m.group(2)),
                "statistics": float(m.group(3)), "gptq": float(m.group(4))}
    out["swiftcompress"] = sc
    print("== large transformers forward (decoder body, the same samples)", flush=True)
    result = os.path.join(work, "reference-forward.json")
    rc, _, _, err = timed([sys.executable, os.path.abspath(__file__), "_fwd", "--model", model,
                           "--tokens", tokens, "--result", result,
                           "--threads", str(args.threads)], env=thread_env(args.threads))
    if rc == 0:
        with open(result) as f:
            out["reference_forward"] = json.load(f)
        out["reference_forward"]["two_passes_seconds"] = round(
            2 * out["reference_forward"]["forward_seconds"], 3)
    else:
        out["reference_forward"] = {"error": err.strip()[-1500:]}
    print("   " + json.dumps(out["reference_forward"]), flush=True)
    print("== large llm-compressor gptq W4A16 g128", flush=True)
    lc = {"load_before": load()}
    lc.update(run_reference("gptq-w4a16-g64", model, True, ignore, tokens,
                            os.path.join(work, "llm-compressor-gptq"), group, args.threads,
                            args.large_ref_repeats, logs))
    out["llm_compressor"] = lc
    out["quality"] = large_quality(args, model, config, work, tokens, group)
    bound = layer_bound(config, args.large_samples, args.large_tokens, 4096)
    out["rss_bound_bytes"] = bound
    if "error" not in sc:
        out["swiftcompress_rss_over_bound"] = round(sc["peak_rss_mib"] * 2 ** 20 / bound["total"], 3)
        out["swiftcompress_rss_over_whole_layer_bound"] = round(
            sc["peak_rss_mib"] * 2 ** 20 / bound["whole_layer_reading"]["total"], 3)
    if "error" not in sc and "error" not in lc:
        out["ratio_oneshot"] = round(lc["oneshot_seconds"] / sc["process_seconds"], 2)
        out["ratio_process"] = round(lc["process_seconds"] / sc["process_seconds"], 2)
        split = sc.get("calibration_split_seconds")
        forward = out["reference_forward"].get("two_passes_seconds")
        if split and forward:
            # Both tools run every layer twice in float32 (the same sgemm work); the rest is
            # the method (statistics, factorizations, error feedback, encoding) and I/O.
            ours = sc["process_seconds"] - split["forward_passes"]
            theirs = lc["oneshot_seconds"] - forward
            out["beyond_forward_seconds"] = {"swiftcompress_process": round(ours, 3),
                                             "llm_compressor_oneshot": round(theirs, 3)}
            out["ratio_beyond_forward"] = round(theirs / ours, 2)
    return out


# ---------------------------------------------------------------- summary


def better(decoder, a, b):
    """+1 if score a beats b, -1 if worse, 0 (tie) if they differ by less than float
    summation noise: 1e-5 relative for a KLD, 1e-6 absolute for a cosine."""
    if abs(a - b) <= (1e-5 * max(abs(a), abs(b)) if decoder else 1e-6):
        return 0
    return (1 if a < b else -1) if decoder else (1 if a > b else -1)


def comparisons(doc):
    rows = []
    for model in doc["models"]:
        runs = [r for r in doc["runs"] if r["model"] == model]
        decoder = model == "llama"
        key = "kld_mean" if decoder else "cosine_mean"
        for kind, scheme in [("gptq", s) for s in SCHEMES] + [(p, "2:4") for p in PRUNERS]:
            refrow = next((r for r in runs if r["tool"] == "llm-compressor" and r["kind"] == kind
                           and r["scheme"] == scheme), None)
            mine = [r for r in runs if r["tool"] == "swiftcompress" and r["kind"] == kind
                    and r["scheme"] == scheme and r.get("scores")]
            if refrow is None or not refrow.get("scores") or not mine:
                rows.append({"model": model, "kind": kind, "scheme": scheme, "error": True})
                continue
            refscore = refrow["scores"][key]
            best = min(mine, key=lambda r: r["scores"][key] * (1 if decoder else -1))
            like = next((r for r in mine if r.get("refit", "none") == "none" and (
                kind != "gptq" or (r["actorder"] == "static" and r["scale_search"] == "none"))),
                None)
            verdict = better(decoder, best["scores"][key], refscore)
            extra = {}
            if scheme == "2:4":
                # issue 15's bar for 2:4: the reference's best of SparseGPT and Wanda
                refs2 = [r["scores"][key] for r in runs if r["tool"] == "llm-compressor"
                         and r["scheme"] == "2:4" and r.get("scores")]
                bar = min(refs2, key=lambda v: v * (1 if decoder else -1))
                extra = {"reference_best_2of4": bar,
                         "best_vs_reference_best_2of4": {1: "win", 0: "tie", -1: "loss"}[
                             better(decoder, best["scores"][key], bar)]}
            rows.append({**extra,
                "model": model, "kind": kind, "scheme": scheme, "metric": key,
                "reference": refscore,
                "swiftcompress": {r["option"]: r["scores"][key] for r in mine},
                "best_option": best["option"], "best": best["scores"][key],
                "best_vs_reference": {1: "win", 0: "tie", -1: "loss"}[verdict],
                "like_for_like_option": like["option"],
                "like_for_like_vs_reference": {1: "win", 0: "tie", -1: "loss"}[
                    better(decoder, like["scores"][key], refscore)],
                "reference_oneshot_seconds": refrow["oneshot_seconds"],
                "reference_process_seconds": refrow["process_seconds"],
                "reference_peak_rss_mib": refrow["peak_rss_mib"],
                "swiftcompress_seconds": like["process_seconds"],
                "swiftcompress_peak_rss_mib": like["peak_rss_mib"],
                "ratio_oneshot": round(refrow["oneshot_seconds"] / like["process_seconds"], 2),
                "ratio_process": round(refrow["process_seconds"] / like["process_seconds"], 2),
            })
    return rows


def fmt(x, decoder):
    return f"{x:.5f}" if decoder else f"{x:.7f}"


def per_sample_cosines(binary, original, candidate, tokens, scratch):
    """Each held-out sample's embedding cosine, by evaluating it alone."""
    lines = [line for line in open(tokens).read().splitlines() if line.strip()]
    os.makedirs(scratch, exist_ok=True)
    out = []
    for i, line in enumerate(lines):
        path = os.path.join(scratch, f"sample-{i}.jsonl")
        with open(path, "w") as f:
            f.write(line + "\n")
        report, err = ref.evaluate(binary, original, candidate, path)
        if report is None:
            raise RuntimeError(err)
        out.append(report["encoder"]["cosine_mean"])
    return out


def noise(args, doc, model):
    """Paired per-sample differences of the best option against the like-for-like one."""
    spec = ref.MODELS[model]
    evals = ref.token_paths(model)[1]
    work = os.path.join(os.path.abspath(args.out), model)
    rows = []
    for c in doc["comparisons"]:
        if c["model"] != model or c.get("error") or c["best_option"] == c["like_for_like_option"]:
            continue
        cand = lambda name: os.path.join(work, "swiftcompress-" + name)  # noqa: E731
        a = per_sample_cosines(args.swiftcompress, spec["path"], cand(c["like_for_like_option"]),
                               evals, os.path.join(work, "samples"))
        b = per_sample_cosines(args.swiftcompress, spec["path"], cand(c["best_option"]), evals,
                               os.path.join(work, "samples"))
        d = [y - x for x, y in zip(a, b)]
        mean = sum(d) / len(d)
        se = (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5
        rows.append({"kind": c["kind"], "scheme": c["scheme"], "best": c["best_option"],
                     "like_for_like": c["like_for_like_option"], "samples": len(d),
                     "mean_difference": mean, "standard_error": se,
                     "t": mean / se if se > 0 else None,
                     "best_higher_on": sum(1 for x in d if x > 0)})
        print(f"   noise {c['kind']} {c['scheme']}: {mean:+.2e} +- {se:.1e}", flush=True)
    return rows


def table_lines(doc):
    lines = []
    for model in doc["models"]:
        decoder = model == "llama"
        metric = "mean KLD (lower is better)" if decoder else "mean cosine (higher is better)"
        comps = [c for c in doc["comparisons"] if c["model"] == model]
        lines += [f"### {model}: {metric}", "",
                  "| scheme | llm-compressor | refit none, static (like for like) | "
                  "refit none, static + mse | refit, static | refit, static + mse | "
                  "refit, none | refit, none + mse | best swiftcompress vs reference |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in comps:
            if c.get("error"):
                lines.append(f"| {c['kind']} {c['scheme']} | error | | | | | | | |")
                continue
            name = f"{c['kind']} {c['scheme']}"
            sc = c["swiftcompress"]
            if c["kind"] == "gptq":
                base = f"gptq-{slug(c['scheme'])}-actorder-"
                cells = [sc.get(base + "static-refit-none"), sc.get(base + "static-mse-refit-none"),
                         sc.get(base + "static"), sc.get(base + "static-mse"),
                         sc.get(base + "none"), sc.get(base + "none-mse")]
                cells = ["" if v is None else fmt(v, decoder) for v in cells]
                best = c["best_option"].replace(base, "").replace("-mse", " + mse")
                best = best.replace("-refit-none", ", refit none")
                if not c["best_option"].endswith("-refit-none"):
                    best = "refit, " + best
            else:
                base = f"{c['kind']}-2of4"
                cells = [sc.get(base + "-refit-none"), None, sc.get(base), None, None, None]
                cells = ["—" if v is None else fmt(v, decoder) for v in cells]
                best = c["kind"] + (", refit none" if c["best_option"].endswith("-refit-none")
                                    else ", refit")
            pct = (c["best"] - c["reference"]) / c["reference"] * 100 if decoder else \
                (c["best"] - c["reference"]) * 1e5
            delta = f"{pct:+.1f} %" if decoder else f"{pct:+.2f}e-5"
            verdict = f"**{c['best_vs_reference']}** ({best}: {delta})"
            if "reference_best_2of4" in c:
                verdict += f"; vs the reference's best 2:4: **{c['best_vs_reference_best_2of4']}**"
            lines.append(f"| {name} | {fmt(c['reference'], decoder)} | " + " | ".join(cells)
                         + f" | {verdict} |")
        lines += noise_lines(doc, model)
        lines += ["", f"Time and memory on {model} (swiftcompress: actorder static, no scale "
                  "search, refit none, the like-for-like option; best of "
                  f"{doc['settings']['repeats']}):", "",
                  "| scheme | llm-compressor oneshot s | llm-compressor process s | "
                  "swiftcompress process s | ratio oneshot / swiftcompress | "
                  "ratio process / swiftcompress | llm-compressor peak RSS MiB | "
                  "swiftcompress peak RSS MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in comps:
            if c.get("error"):
                continue
            lines.append(
                f"| {c['kind']} {c['scheme']} | {c['reference_oneshot_seconds']:.2f} | "
                f"{c['reference_process_seconds']:.2f} | {c['swiftcompress_seconds']:.2f} | "
                f"{c['ratio_oneshot']:.2f} | {c['ratio_process']:.2f} | "
                f"{c['reference_peak_rss_mib']:.0f} | {c['swiftcompress_peak_rss_mib']:.0f} |")
        lines.append("")
    large = doc.get("large")
    if large:
        sc, lc = large.get("swiftcompress", {}), large.get("llm_compressor", {})
        b = large["rss_bound_bytes"]
        mib = 2 ** 20
        lines += [f"### large: {large['model']} GPTQ W4A16 g128, {large['samples']} samples x "
                  f"{large['tokens_per_sample']} random tokens", "",
                  "| | llm-compressor | swiftcompress |", "|---|---|---|"]
        if "error" in lc:
            lines.append(f"| error | {lc['error'][:200]} | |")
        else:
            lines.append(f"| oneshot s (best of {len(lc['oneshot_seconds_all'])}) | "
                         f"{lc['oneshot_seconds']:.1f} | |")
            lines.append(f"| whole process s | {lc['process_seconds']:.1f} | "
                         f"{sc.get('process_seconds', float('nan')):.1f} "
                         f"(best of {len(sc.get('process_seconds_all', []))}) |")
            lines.append(f"| peak RSS MiB | {lc['peak_rss_mib']:.0f} | "
                         f"{sc.get('peak_rss_mib', float('nan')):.0f} |")
        if "ratio_oneshot" in large:
            lines += ["", f"Ratio llm-compressor / swiftcompress: oneshot call "
                      f"{large['ratio_oneshot']:.2f}, whole process {large['ratio_process']:.2f}."]
        lines += ["", "RSS bound (issue 15), narrow reading (one intermediate, one H): " + ", ".join(
            f"{k.replace('_', ' ')} {v / mib:.1f} MiB" for k, v in b.items()
            if k not in ("total", "whole_layer_reading"))
            + f"; total **{b['total'] / mib:.1f} MiB**."]
        if "swiftcompress_rss_over_bound" in large:
            lines.append(f"swiftcompress peak RSS / bound = **{large['swiftcompress_rss_over_bound']:.2f}**.")
        whole = b.get("whole_layer_reading")
        if whole:
            lines += ["", "The same bound read as one layer's whole working set: " + ", ".join(
                f"{k.replace('_', ' ')} {v / mib:.1f} MiB" for k, v in whole.items() if k != "total")
                + f"; total **{whole['total'] / mib:.1f} MiB**; swiftcompress peak RSS / bound = "
                f"**{large.get('swiftcompress_rss_over_whole_layer_bound', float('nan')):.2f}**."]
        quality = large.get("quality", {}).get("mean_kld", {})
        if quality:
            lines += ["", f"Mean KLD on held-out tokens ({large['quality'].get('evaluation', '')}): " + ", ".join(
                f"{k.replace('_', ' ')} {v:.5f}" if isinstance(v, float) else f"{k} error"
                for k, v in quality.items()) + "."]
        split = sc.get("calibration_split_seconds")
        if split and "reference_forward" in large:
            lines += ["", f"swiftcompress's calibration: forward passes {split['forward_passes']:.1f} s, "
                      f"statistics {split['statistics']:.1f} s, gptq {split['gptq']:.1f} s. "
                      f"transformers' forward of the same samples, twice (the sequential pipeline "
                      f"runs each layer twice): {large['reference_forward'].get('two_passes_seconds', float('nan')):.1f} s."]
        if "ratio_beyond_forward" in large:
            bf = large["beyond_forward_seconds"]
            lines.append(f"Beyond the forward passes: llm-compressor {bf['llm_compressor_oneshot']:.1f} s, "
                         f"swiftcompress {bf['swiftcompress_process']:.1f} s: "
                         f"**{large['ratio_beyond_forward']:.2f}x**.")
        lines.append("")
    return lines


def noise_lines(doc, model):
    rows = doc.get("noise", {}).get(model, [])
    if not rows:
        return []
    lines = ["", f"Noise on {model}: per held-out sample, the best option's cosine minus the "
             "like-for-like option's (equal to llm-compressor's), paired over "
             f"{rows[0]['samples']} samples:", "",
             "| scheme | best option | mean difference | standard error | mean / SE | "
             "samples where best is higher |", "|---|---|---|---|---|---|"]
    for n in rows:
        lines.append(f"| {n['kind']} {n['scheme']} | {n['best']} | {n['mean_difference']:+.2e} | "
                     f"{n['standard_error']:.1e} | {n['t']:.1f} | "
                     f"{n['best_higher_on']}/{n['samples']} |")
    return lines


def cmd_table(args):
    with open(args.results) as f:
        doc = json.load(f)
    print("\n".join(table_lines(doc)))


def machine():
    info = {"cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def cmd_run(args):
    args.swiftcompress = os.path.abspath(args.swiftcompress)
    version = subprocess.run([args.swiftcompress, "--version"], capture_output=True,
                             text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    doc = {
        "description": "issue 15: llm-compressor oneshot (sequential pipeline, CPU) vs "
                       "swiftcompress calibrated options on the same calibration tokens, "
                       "scored by swiftcompress evaluate on held-out tokens",
        "versions": {**ref.versions(), "swiftcompress": version or None,
                     "swiftcompress_commit": commit},
        "machine": machine(),
        "threads": args.threads,
        "load_average_start": load(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": args.models,
        "calibration_tokens": {m: rel(ref.token_paths(m)[0]) for m in args.models},
        "evaluation_tokens": {m: rel(ref.token_paths(m)[1]) for m in args.models},
        "settings": {
            "repeats": args.repeats,
            "integer_group_size": {"fixtures": ref.INT_GROUP, "large": 128},
            "llm_compressor": "GPTQModifier defaults (block 128, dampening 0.01, actorder "
                              "static, memoryless min-max observer); SparseGPTModifier / "
                              "WandaPruningModifier(sparsity=0.5, mask_structure='2:4'); "
                              "oneshot(pipeline=sequential, batch_size=1, "
                              "shuffle_calibration_samples=False)",
            "swiftcompress": SWIFT_SETTINGS,
            "timing": "swiftcompress: whole CLI process, best of repeats; llm-compressor: "
                      "best oneshot call and best whole process (python start, imports, "
                      "load, oneshot, save) over repeats fresh processes; peak RSS: "
                      "ru_maxrss of each child via wait4, max over repeats",
        },
        "runs": [],
    }
    for model in args.models:
        doc["runs"] += fixture_runs(args, model)
    doc["comparisons"] = comparisons(doc)
    doc["noise"] = {m: noise(args, doc, m) for m in args.models if m != "llama"}
    if args.large_model:
        doc["large"] = large_runs(args)
    doc["load_average_end"] = load()
    write(doc, args)


def write(doc, args):
    doc["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    print("\n".join(table_lines(doc)))


def cmd_ours(args):
    """Reruns only swiftcompress's fixture options into an existing results JSON."""
    args.swiftcompress = os.path.abspath(args.swiftcompress)
    args.ours_only = True
    with open(args.json) as f:
        doc = json.load(f)
    replaced = [r for r in doc["runs"] if r["tool"] == "swiftcompress" and
                r["model"] in args.models]
    if replaced and "swiftcompress_runs_previous" not in doc:
        # kept: the rows the first complete run measured (its timings were taken at a lower load)
        doc["swiftcompress_runs_previous"] = replaced
    doc["runs"] = [r for r in doc["runs"] if r not in replaced]
    doc["settings"]["swiftcompress"] = SWIFT_SETTINGS
    doc["settings"]["repeats_swiftcompress"] = args.repeats
    doc["swiftcompress_rows"] = (
        "swiftcompress's fixture rows were rerun by 'calibrated.py ours' "
        f"({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit "
        + subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
        + ", each row's measured_utc); the llm-compressor rows and the large section are "
        "from the run started at " + doc.get("started_utc", "?") + ", not rerun")
    if "swiftcompress_runs_previous" in doc:
        doc["swiftcompress_rows"] += (
            "; the swiftcompress rows that run measured (before the refit existed: their options "
            "are the -refit-none ones here) are kept as swiftcompress_runs_previous")
    for model in args.models:
        doc["runs"] += fixture_runs(args, model)
    doc["comparisons"] = comparisons(doc)
    doc["noise"] = {m: noise(args, doc, m) for m in args.models if m != "llama"}
    write(doc, args)


def cmd_large(args):
    """Reruns only the large-model part into an existing results JSON."""
    args.swiftcompress = os.path.abspath(args.swiftcompress)
    with open(args.json) as f:
        doc = json.load(f)
    doc["large"] = large_runs(args)
    doc["comparisons"] = comparisons(doc)
    doc["large"]["load_average_end"] = load()
    write(doc, args)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    lg = sub.add_parser("large")
    r.add_argument("--swiftcompress", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--models", nargs="*", default=list(ref.MODELS))
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--large-model", default=None,
                   help="a Scripts/make_bench_model.py model directory (made if missing)")
    r.add_argument("--large-samples", type=int, default=16)
    r.add_argument("--large-tokens", type=int, default=128)
    r.add_argument("--large-repeats", type=int, default=3)
    r.add_argument("--large-ref-repeats", type=int, default=3)
    r.add_argument("--json", default=os.path.join(ROOT, "Benchmarks", "results", "calibrated.json"))
    for name, kw in [("--swiftcompress", {"required": True}), ("--out", {"required": True}),
                     ("--threads", {"type": int, "default": 1}),
                     ("--large-model", {"required": True}),
                     ("--large-samples", {"type": int, "default": 16}),
                     ("--large-tokens", {"type": int, "default": 128}),
                     ("--large-repeats", {"type": int, "default": 3}),
                     ("--large-ref-repeats", {"type": int, "default": 3}),
                     ("--json", {"default": os.path.join(ROOT, "Benchmarks", "results",
                                                         "calibrated.json")})]:
        lg.add_argument(name, **kw)
    o = sub.add_parser("ours")
    for name, kw in [("--swiftcompress", {"required": True}), ("--out", {"required": True}),
                     ("--models", {"nargs": "*", "default": list(ref.MODELS)}),
                     ("--threads", {"type": int, "default": 1}),
                     ("--repeats", {"type": int, "default": 3}),
                     ("--json", {"default": os.path.join(ROOT, "Benchmarks", "results",
                                                         "calibrated.json")})]:
        o.add_argument(name, **kw)
    t = sub.add_parser("table")
    t.add_argument("results", nargs="?",
                   default=os.path.join(ROOT, "Benchmarks", "results", "calibrated.json"))
    fw = sub.add_parser("_fwd")
    for name in ("model", "tokens", "result"):
        fw.add_argument("--" + name, required=True)
    fw.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("_ref")
    for name in ("method", "model", "tokens", "out", "result"):
        c.add_argument("--" + name, required=True)
    c.add_argument("--group", type=int, required=True)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--ignore", nargs="*", default=[])
    c.add_argument("--causal", action="store_true")
    args = p.parse_args()
    {"run": cmd_run, "ours": cmd_ours, "large": cmd_large, "table": cmd_table,
     "_ref": cmd_ref_child, "_fwd": cmd_forward_child}[args.cmd](args)


if __name__ == "__main__":
    main()
