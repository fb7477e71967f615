#!/usr/bin/env python3
"""make bench-scale: peak memory of quantize, prune and factorize over a checkpoint far
larger than one tensor, against the goal of 3 x the largest tensor + 100 MB.

usage: scale.py SWIFTCOMPRESS CHECKPOINT WORKDIR

Each command runs once into WORKDIR (removed after it); its report gives the time and
the peak RSS (VmHWM), printed next to the checkpoint size. Exits 1 when a run fails or
goes over the goal.
"""
import json
import os
import shutil
import subprocess
import sys


def main():
    tool, checkpoint, work = sys.argv[1:4]
    index = json.load(open(os.path.join(checkpoint, "model.safetensors.index.json")))
    size = index["metadata"]["total_size"]
    inspect = json.loads(subprocess.run([tool, "inspect", checkpoint, "--json"], check=True,
                                        capture_output=True, text=True).stdout)
    largest = max(t["bytes"] for t in inspect["tensors"])
    goal = 3 * largest + 100 * 2**20
    runs = [
        ("quantize NVFP4", ["quantize", "--scheme", "NVFP4"]),
        ("quantize W4A16", ["quantize", "--scheme", "W4A16"]),
        ("prune 2:4", ["prune", "--method", "nm", "--pattern", "2:4"]),
        ("prune magnitude global 50%", ["prune", "--method", "magnitude", "--sparsity", "0.5", "--scope", "global"]),
        ("factorize rsvd rank 256", ["factorize", "--method", "rsvd", "--rank", "256"]),
    ]
    print(f"checkpoint {checkpoint}: {size / 2**30:.2f} GiB in {len(set(index['weight_map'].values()))} shards, "
          f"largest tensor {largest / 2**20:.0f} MiB; goal: peak RSS < 3 x largest + 100 MiB = {goal / 2**20:.0f} MiB")
    print(f"| command | checkpoint | time | GB/s | peak RSS | goal | output |")
    print(f"|---|---|---|---|---|---|---|")
    failed = False
    for label, args in runs:
        out = os.path.join(work, "out")
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run([tool, args[0], checkpoint, out] + args[1:] + ["--json"], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"| {label} | failed: {result.stderr.strip()} |")
            failed = True
            continue
        report = json.loads(result.stdout)
        t = report["timing"]
        rss = t["peak_rss_bytes"]
        ok = rss < goal
        failed |= not ok
        print(f"| {label} | {size / 2**30:.2f} GiB | {t['seconds']:.1f} s | {size / t['seconds'] / 1e9:.2f} | "
              f"{rss / 2**20:.0f} MiB | {'met' if ok else 'NOT met'} | {report['totals']['bytes_after'] / 2**30:.2f} GiB |",
              flush=True)
        shutil.rmtree(out, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
