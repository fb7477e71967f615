#!/usr/bin/env bash
# Online block-wise Hadamard rotation (quantize --rotate block-hadamard:B): mean KL divergence on
# held-out tokens, round to nearest and GPTQ, with and without the rotation (docs/rotation.md).
#
# usage: Benchmarks/online_rotation.sh [SWIFTCOMPRESS] [WORKDIR]
# Two models:
# - Fixtures/models/llama (hidden 64, intermediate 128, Gaussian weights): calibration and held-out
#   tokens of Fixtures/golden/calibrated/ (its own tokenizer, Fixtures/text/corpus.txt);
# - Fixtures/tiny-llama-f32 (hidden 128, intermediate 384, Student-t weights with 2 outlier input
#   channels x 8): no tokenizer, so 32 calibration samples of 64 ids drawn with Python's
#   random.Random(15) from its vocabulary (512), held-out Fixtures/golden/evaluation/tokens.tiny-llama-f32.jsonl.
# A block that does not divide an input dimension (128 on the 64-wide model) or a group the
# model's rows cannot hold (128 on it) is refused by swiftcompress: printed as "refused".
set -u
BIN=${1:-.build/release/swiftcompress}
WORK=${2:-/tmp/swiftcompress-online-rotation}
mkdir -p "$WORK"
CAL_TINY="$WORK/calibration-tokens.tiny-llama-f32.jsonl"
python3 - "$CAL_TINY" <<'PY'
import json, random, sys
r = random.Random(15)
with open(sys.argv[1], "w") as f:
    for _ in range(32):
        f.write(json.dumps([r.randrange(512) for _ in range(64)]) + "\n")
PY

kld() {  # reference candidate tokens -> mean KLD and same top-1
  "$BIN" evaluate "$1" "$2" --tokens "$3" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)["decoder"]
top = d.get("same_top_p", {}).get("mean")
print("%.6f" % d["kld"]["mean"], "" if top is None else "%.1f%%" % (100 * top))'
}

run() {  # model cal eval label scheme-args...
  local model=$1 cal=$2 eval=$3 label=$4; shift 4
  for method in rtn gptq; do
    local row="| $label | $method |"
    for block in none 16 32 128; do
      local out="$WORK/out"
      rm -rf "$out"
      local args=("$@")
      [ "$block" != none ] && args+=(--rotate "block-hadamard:$block")
      [ "$method" = gptq ] && args+=(--method gptq --tokens "$cal")
      if "$BIN" quantize "$model" "$out" "${args[@]}" --quiet >/dev/null 2>"$WORK/err"; then
        row="$row $(kld "$model" "$out" "$eval" | cut -d' ' -f1) |"
      else
        row="$row refused ($(grep -o 'error: .*' "$WORK/err" | head -c 60)...) |"
      fi
    done
    echo "$row"
  done
}

echo "| model, scheme | method | no rotation | block 16 | block 32 | block 128 |"
echo "|---|---|---|---|---|---|"
L=Fixtures/models/llama
run $L Fixtures/golden/calibrated/calibration-tokens.llama.jsonl Fixtures/golden/calibrated/evaluation-tokens.llama.jsonl \
  "llama (64), W4A16 g32" --scheme W4A16 --group-size 32
run $L Fixtures/golden/calibrated/calibration-tokens.llama.jsonl Fixtures/golden/calibrated/evaluation-tokens.llama.jsonl \
  "llama (64), MXFP4A16" --scheme MXFP4A16
T=Fixtures/tiny-llama-f32
E=Fixtures/golden/evaluation/tokens.tiny-llama-f32.jsonl
run $T "$CAL_TINY" $E "tiny-llama-f32 (128), W4A16 g32" --scheme W4A16 --group-size 32
run $T "$CAL_TINY" $E "tiny-llama-f32 (128), W4A16 g128" --scheme W4A16 --group-size 128
run $T "$CAL_TINY" $E "tiny-llama-f32 (128), MXFP4A16" --scheme MXFP4A16
