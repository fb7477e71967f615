#!/usr/bin/env bash
# Builds the Tokenizers sources (and the JSON parser they use) with -O into one executable and measures
# encoding throughput on the test corpus. usage: Benchmarks/tokenizers/bench.sh   (from the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for f in "$root"/Sources/Tokenizers/*.swift "$root"/Sources/CheckpointIO/JSON.swift; do
  sed '/^import CheckpointIO$/d' "$f" > "$work/$(basename "$f")"
done
cp "$root/Benchmarks/tokenizers/main.swift" "$work/main.swift"
swiftc -O -module-name TokenizersBench "$work"/*.swift -o "$work/bench"
"$work/bench" "$root"
