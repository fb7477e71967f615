#!/usr/bin/env python3
"""Mixed precision (issue 16), measured with swiftcompress itself; standard library only.

speed:   `analyze` over every candidate against the sum of one `quantize` per candidate (whole
         processes, best of --runs, peak RSS of each), and `quantize --target-bpw` against the
         single-scheme runs, on a checkpoint (make bench: the >=512 MB generated one).
quality: on a model with calibration and held-out token files: `calibrate` (diagonal and, with
         --hessians, full XᵀX), then for each budget the allocation (data-free, diagonal, full)
         against every single scheme that fits the same budget, scored by `evaluate` on the
         held-out tokens (mean KL divergence for decoders, mean embedding cosine for encoders).

Prints tables and writes the figures as JSON (--json)."""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

CANDIDATES = ["NVFP4A16", "MXFP4A16", "W4A16:g128", "W4A16:g32", "W8A16:g128", "keep"]


def run(cmd):
    """Runs `cmd`; returns (seconds, peak RSS in MiB, completed process). Output goes to files,
    not pipes, so that a large output cannot block the child before it is waited for."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(cmd)}\n{stderr}")
    return seconds, usage.ru_maxrss / 1024, subprocess.CompletedProcess(cmd, code, stdout, stderr)


def best(cmd, runs, before=None):
    times, rss, last = [], 0.0, None
    for _ in range(runs):
        if before:
            before()
        t, r, last = run(cmd)
        times.append(t)
        rss = max(rss, r)
    return min(times), rss, last


def scheme_args(choice):
    name, _, group = choice.partition(":g")
    return ["--scheme", name] + (["--group-size", group] if group else [])


def speed(args):
    work = os.path.abspath(args.out)
    os.makedirs(work, exist_ok=True)
    out = os.path.join(work, "q")

    def clear():
        shutil.rmtree(out, ignore_errors=True)

    schemes = [c for c in args.candidates.split(",") if c != "keep"]
    singles = {}
    for choice in schemes:
        t, rss, _ = best([args.swiftcompress, "quantize", args.checkpoint, out, "-q"] + scheme_args(choice),
                         args.runs, clear)
        singles[choice] = {"seconds": t, "peak_rss_mib": rss}
        print(f"quantize {choice:<12} {t:8.3f} s  {rss:8.1f} MiB", flush=True)
    total = sum(v["seconds"] for v in singles.values())
    t, rss, _ = best([args.swiftcompress, "analyze", args.checkpoint, "--schemes", args.candidates, "--json"],
                     args.runs)
    print(f"analyze ({len(schemes)} schemes + keep) {t:8.3f} s  {rss:8.1f} MiB", flush=True)
    ta, rssa, proc = best([args.swiftcompress, "quantize", args.checkpoint, out, "-q", "--target-bpw",
                           str(args.target_bpw), "--candidates", args.candidates], args.runs, clear)
    print(f"quantize --target-bpw {args.target_bpw} {ta:8.3f} s  {rssa:8.1f} MiB", flush=True)
    clear()
    result = {"checkpoint": args.checkpoint, "bytes": sum(
        os.path.getsize(os.path.join(args.checkpoint, f)) for f in os.listdir(args.checkpoint)
        if f.endswith(".safetensors")),
        "runs": args.runs, "quantize": singles, "sum_of_quantize_seconds": total,
        "analyze": {"seconds": t, "peak_rss_mib": rss}, "analyze_over_sum": t / total,
        "allocation": {"target_bpw": args.target_bpw, "seconds": ta, "peak_rss_mib": rssa,
                       "over_sum": ta / total}}
    print(f"analyze / sum of quantize: {t / total:.3f} (goal <= 1); "
          f"quantize --target-bpw / sum: {ta / total:.3f}", flush=True)
    return result


def evaluate(binary, model, candidate, tokens):
    _, _, proc = run([binary, "evaluate", model, candidate, "--tokens", tokens, "--json"])
    report = json.loads(proc.stdout)
    if "decoder" in report:
        return "mean KLD", report["decoder"]["kld"]["mean"]
    return "mean cosine", report["encoder"]["cosine_mean"]


def allocated_bpw(folder):
    """Stored bits per weight of the quantized modules, from the report."""
    with open(os.path.join(folder, "swiftcompress-report.json")) as f:
        report = json.load(f)
    bits = weights = 0
    for t in report["tensors"]:
        if t["action"] == "transformed":
            bits += t["bytes_after"] * 8
            weights += t["parameters"]
    return bits / weights


def quality(args):
    work = os.path.abspath(args.out)
    os.makedirs(work, exist_ok=True)
    binary, model = args.swiftcompress, args.model
    ignore = [a for m in ["lm_head"] + args.ignore for a in ("--ignore", m)] if args.ignore else []
    stats = {}
    stats["diagonal"] = os.path.join(work, "statistics.safetensors")
    run([binary, "calibrate", model, "--tokens", args.tokens, "-o", stats["diagonal"], "--force"])
    if args.hessians:
        stats["full"] = os.path.join(work, "statistics-hessians.safetensors")
        run([binary, "calibrate", model, "--tokens", args.tokens, "-o", stats["full"], "--force", "--hessians"])
    sensitivity = None
    if args.measured_samples:
        # The model's own loss per weight and scheme, measured once, reused for every budget.
        sensitivity = os.path.join(work, "sensitivity.json")
        t, rss, proc = run([binary, "analyze", model, "--schemes", args.candidates, "--tokens", args.tokens,
                            "--samples", str(args.measured_samples), "--json"] + ignore)
        with open(sensitivity, "w") as f:
            f.write(proc.stdout)
        print(f"analyze --tokens ({args.measured_samples} samples): {t:.1f} s, {rss:.0f} MiB", flush=True)
    uniform = {}
    for choice in [c for c in args.candidates.split(",") if c != "keep"]:
        out = os.path.join(work, "uniform-" + choice.replace(":", "-"))
        shutil.rmtree(out, ignore_errors=True)
        run([binary, "quantize", model, out, "-q"] + scheme_args(choice) + ignore)
        metric, value = evaluate(binary, model, out, args.eval)
        uniform[choice] = {"bpw": allocated_bpw(out), metric: value}
        print(f"uniform {choice:<12} {uniform[choice]['bpw']:.3f} bits/weight  {metric} {value:.6g}", flush=True)
    results = {"model": model, "tokens": args.tokens, "evaluation": args.eval, "uniform": uniform, "budgets": {}}
    higher_is_better = metric == "mean cosine"
    for budget in args.budgets:
        entry = {}
        fitting = {c: v for c, v in uniform.items() if v["bpw"] <= budget}
        if fitting:
            pick = (max if higher_is_better else min)(fitting, key=lambda c: fitting[c][metric])
            entry["best_uniform"] = {"scheme": pick, **fitting[pick]}
        for name, path in [("data_free", None)] + list(stats.items()) + ([("measured", None)] if sensitivity else []):
            out = os.path.join(work, f"alloc-{budget}-{name}")
            shutil.rmtree(out, ignore_errors=True)
            cmd = [binary, "quantize", model, out, "-q", "--target-bpw", str(budget), "--candidates",
                   args.candidates] + ignore
            if path:
                cmd += ["--calibration", path]
            if name == "measured":
                cmd = [binary, "quantize", model, out, "-q", "--target-bpw", str(budget), "--sensitivity",
                       sensitivity] + ignore
            run(cmd)
            _, value = evaluate(binary, model, out, args.eval)
            with open(os.path.join(out, "swiftcompress-report.json")) as f:
                note = next((n for n in json.load(f).get("notes", []) if n.startswith("allocation")), "")
            entry[name] = {"bpw": allocated_bpw(out), metric: value, "note": note}
        results["budgets"][str(budget)] = entry
        line = f"budget {budget}: " + ", ".join(
            f"{k} {v[metric]:.6g} ({v['bpw']:.3f})" + (f" [{v['scheme']}]" if k == "best_uniform" else "")
            for k, v in entry.items())
        print(line, flush=True)
    return results


def tokens_file(path, vocab, samples, length, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(samples):
            f.write(json.dumps([rng.randrange(vocab) for _ in range(length)]) + "\n")
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--swiftcompress", required=True)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--candidates", default=",".join(CANDIDATES))
    s.add_argument("--target-bpw", type=float, default=4.5)
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--out", default=".build/bench-mixed")
    s.add_argument("--json")
    q = sub.add_parser("quality")
    q.add_argument("--swiftcompress", required=True)
    q.add_argument("--model", required=True)
    q.add_argument("--tokens", help="calibration tokens (default: random ids, random.Random(16))")
    q.add_argument("--eval", help="held-out tokens (default: random ids, random.Random(1616))")
    q.add_argument("--samples", type=int, default=16)
    q.add_argument("--length", type=int, default=128)
    q.add_argument("--candidates", default=",".join(CANDIDATES))
    q.add_argument("--budgets", type=float, nargs="+", default=[4.3, 4.6, 5.0])
    q.add_argument("--hessians", action="store_true")
    q.add_argument("--ignore", action="append", default=[],
                   help="modules left out of every run (e.g. a pooler that calibrate gathers no statistics for)")
    q.add_argument("--measured-samples", type=int, default=0,
                   help="also allocate on the model's measured KL divergence (analyze --tokens) over this many samples")
    q.add_argument("--out", default=".build/bench-mixed/quality")
    q.add_argument("--json")
    args = p.parse_args()
    if args.command == "speed":
        result = speed(args)
    else:
        os.makedirs(args.out, exist_ok=True)
        if not args.tokens or not args.eval:
            with open(os.path.join(args.model, "config.json")) as f:
                vocab = json.load(f)["vocab_size"]
            args.tokens = args.tokens or tokens_file(os.path.join(args.out, "calibration.jsonl"), vocab,
                                                     args.samples, args.length, 16)
            args.eval = args.eval or tokens_file(os.path.join(args.out, "evaluation.jsonl"), vocab,
                                                 args.samples // 2, args.length, 1616)
        result = quality(args)
    if args.json:
        existing = {}
        if os.path.exists(args.json):
            with open(args.json) as f:
                existing = json.load(f)
        key = args.command if args.command == "speed" else "quality:" + os.path.basename(os.path.normpath(args.model))
        existing[key] = result
        with open(args.json, "w") as f:
            json.dump(existing, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
