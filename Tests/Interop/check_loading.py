#!/usr/bin/env python3
"""Every output loads where it says it does, or refuses loudly (run by `make interop`).

usage: check_loading.py SWIFTCOMPRESS WORKDIR [online|mixed]
(`online` runs only the online rotation's cases, 7 below; `mixed` only the mixed-precision ones, 6.)

For the Llama fixture and a BERT fixture, for every quantization scheme's default output
and for mixed selections (--include, --exclude, recipe targets, exclude and skip
overrides), and for the layouts no standard loader reads:

1. transformers (with compressed-tensors) loads the output with no missing, unexpected
   or mismatched keys beyond those of the input itself, and its forward pass equals the
   forward pass of `swiftcompress decompress`'s output, within a stated tolerance;
2. compressed-tensors' model-free dequantizer (`convert_checkpoint` with
   `CompressedTensorsDequantizer`) decodes it to the same tensors as `decompress`;
3. `swiftcompress verify` accepts it;
4. a layout no standard loader reads (factorized weights, a low-rank residual, bitmask
   sparsity, quantized factors) never loads with weights initialised at random: without
   trust_remote_code transformers refuses it; with it, factorized weights load and compute
   what `decompress` computes, the others stop with an error naming `swiftcompress decompress`.
5. the calibrated methods, on token ids drawn from each fixture's vocabulary (they have no
   tokenizer.json): GPTQ writes the round-to-nearest layout and goes through 1-3 (W4A16,
   W8A16, NVFP4A16, MXFP4A16, FP8_DYNAMIC; W4A16 with --rotate hadamard on the Llama);
   SparseGPT and Wanda 2:4 write a plain dense model (which `decompress` refuses: nothing to
   decode) that transformers loads holding exactly the written tensors, every pruned weight
   2:4; with --sparse-format bitmask they go through 4, as SVD-LLM and ASVD do; `rotate`
   writes a plain dense Llama, head untied, whose logits equal the original's (the rotation
   is exact up to float sums).
6. mixed precision (`quantize --scheme-for REGEX=SCHEME`, `--target-bpw` with and without
   --calibration): one compressed-tensors config group per scheme, top-level format
   `mixed-precision` when the groups' formats differ. Besides 1-3: the config has more than
   one group, the groups' targets are exact module names, disjoint and not ignored, the
   shards vLLM fuses (q/k/v, gate/up; BERT's query/key/value) share one group, and the model
   transformers loads carries, on every linear module, the scheme of the group naming it
   (none on the ignored ones). The mixes of an integer group with an FP4 group (the Llama's
   --scheme-for mix and its --target-bpw 6, BERT's --scheme-for mix) run on a BF16 input (the
   Llama's BF16 fixture; BERT's fixture converted with `swiftcompress convert --dtype BF16`),
   where the comparison is exact; see the upstream limits below for the F32 one.
7. the online block-wise rotation (`quantize --rotate block-hadamard:B`, W4A16 g32 block 16,
   MXFP4A16 block 32, GPTQ W4A16 block 128): transformers loads it (the saved transform
   matrix is its only unexpected key) but does not apply transform_config, so its outputs are
   wrong (checked to be); with compressed-tensors' online input transform attached, it
   computes what `decompress`'s dense model computes. The model-free dequantizer decodes the
   stored W R and does not undo R (checked: times R it gives decompress's weights).

Known upstream limits (compressed-tensors 0.20 / transformers 5) are expected, printed and
checked to still fail, so that a fix upstream is noticed:
- W4A16_ASYM does not load in transformers (zero-point size mismatch; llm-compressor's own
  output fails the same way);
- MXFP4A16 and NVFP4A16 of an F32 model load only with dtype=torch.bfloat16, so both sides
  of the comparison run in BF16 (a mixed checkpoint with any such group too);
- an F32 checkpoint mixing integer and FP4 groups (the Llama's --scheme-for mix on the F32
  fixture, case mixed-scheme-for-f32): its F32 forward pass stops with "expected m1 and m2 to
  have the same dtype" (FP4 decoded to BF16), and in BF16 compressed-tensors rounds the
  integer groups' scales to BF16, so their weights are checked to be within one BF16 step
  (1e-2 of each module's largest weight), not equal, to decompress's.

It prints one line per case with the measured differences and exits non-zero on any failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

os.environ.setdefault("TQDM_DISABLE", "1")  # compressed-tensors' per-file progress bars

import torch
import transformers
from loguru import logger
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

logger.remove()  # compressed-tensors logs every copied file, and a note on the config it rewrites
logger.add(sys.stderr, level="ERROR")
transformers.utils.logging.disable_progress_bar()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = {
    # name: (fixture, auto class, input ids, regex of one layer's MLP, of attention, of a whole layer)
    "llama": ("tiny-llama-f32", AutoModelForCausalLM, r"layers\.0\.mlp", "self_attn", r"layers\.1\."),
    "bert": ("tiny-bert-128", AutoModel, r"layer\.0\.(intermediate|output)\.", r"attention", r"layer\.1\."),
}
IDS = torch.tensor([[1, 17, 42, 99, 250, 3, 7, 511], [2, 5, 300, 8, 12, 400, 0, 33]])
SCHEMES = ["W8A16", "W4A16", "W4A16_ASYM", "FP8_DYNAMIC", "FP8_BLOCK", "MXFP4A16", "NVFP4A16", "W2A16", "W3A16", "W5A16",
           "W6A16", "MXFP8A16", "MXFP6A16"]
# Tolerance on the forward pass, relative to the largest output magnitude of the
# decompressed model (x10 in BF16). Both sides hold the same weights, so only the order of
# float sums may differ. The FP8 presets also quantize activations to FP8 (E4M3, per token
# or per group of 128) when compressed-tensors runs them; the decompressed model gets the
# same activation quantization (`quantize_activations`) so the bound stays as tight.
TOLERANCE = {"weights": 1e-4}
# The calibrated methods (GPTQ, SparseGPT, Wanda, SVD-LLM, ASVD) and the schemes GPTQ runs.
CALIBRATION = {"samples": 32, "seq_len": 64}
GPTQ_SCHEMES = ["W4A16", "W8A16", "NVFP4A16", "MXFP4A16", "FP8_DYNAMIC"]
# The formats compressed-tensors 0.20 decodes to BF16 whatever the model's dtype.
MICROSCALED = ("mxfp4-pack-quantized", "nvfp4-pack-quantized", "mxfp8-quantized", "mxfp6-pack-quantized")
# Mixed precision, per model: --scheme-for rules (later rules win) with at least three formats
# and a kept module, each layer's fused shards (q/k/v, gate/up; query/key/value) in one scheme.
MIXED = {
    "llama": ["--scheme", "W4A16",
              "--scheme-for", r"mlp\.down_proj=W8A16",
              "--scheme-for", r"layers\.0\.self_attn=NVFP4A16",
              "--scheme-for", r"layers\.1\.mlp\.(gate|up)_proj=MXFP4A16",
              "--scheme-for", r"layers\.1\.self_attn\.o_proj=keep"],
    "bert": ["--scheme", "W4A16",
             "--scheme-for", r"encoder=W4A16:g32",
             "--scheme-for", r"attention=W8A16",
             "--scheme-for", r"layer\.1\.output\.dense=NVFP4A16",
             "--scheme-for", r"layer\.0\.attention\.output\.dense=keep"],
}
# The shards vLLM fuses into one layer (packed_modules_mapping), which must share a scheme.
FUSED = {"llama": [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")], "bert": [("query", "key", "value")]}
# The --target-bpw allocations (on the Llama; the default candidates).
ALLOCATIONS = {"bpw4.3": ["--target-bpw", "4.3"], "bpw6": ["--target-bpw", "6"],
               "bpw4.3-calibrated": ["--target-bpw", "4.3", "--calibration",
                                     os.path.join(ROOT, "Fixtures", "golden", "evaluation",
                                                  "statistics.tiny-llama-f32.safetensors")]}
# The mixes of an integer group (W4A16, W8A16) with an FP4 group (NVFP4A16, MXFP4A16) run on a
# BF16 input, where transformers computes exactly decompress's weights: compressed-tensors 0.20.1
# decodes FP4 to BF16 whatever the model's dtype, and in a BF16 model it rounds an F32 input's
# integer scales to BF16. The Llama's BF16 input is its BF16 fixture; BERT's is the F32 fixture
# converted by `swiftcompress convert --dtype BF16` into WORK (bf16_input).
MIXED_ON_BF16 = {"llama": ["mixed-scheme-for", "mixed-bpw6"], "bert": ["mixed-scheme-for"]}
BF16_FIXTURES = {"llama": "tiny-llama-bf16"}
# The F32 integer + FP4 mix kept as an upstream-limit check (check_mixed_f32): its F32 load
# must stop on the dtype error and its BF16 load hold weights within one BF16 step (this
# fraction of each module's largest weight) of decompress's.
BF16_STEP = 1e-2
OK = []
FAILURES = []


def run(binary, *arguments, expect=0):
    force = [] if arguments[0] == "verify" else ["--force"]
    result = subprocess.run([binary, *arguments, *force], capture_output=True, text=True)
    if result.returncode != expect:
        raise RuntimeError(f"swiftcompress {' '.join(arguments)} exited {result.returncode}: {result.stderr}")
    return result


def load(folder, auto, dtype, trust=False, **options):
    model, info = auto.from_pretrained(
        folder, dtype=dtype, output_loading_info=True, trust_remote_code=trust, **options)
    model.eval()
    return model, {key: set(info.get(key, [])) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}


def forward(model):
    with torch.no_grad():
        output = model(IDS)
    return (output.logits if hasattr(output, "logits") else output.last_hidden_state).float()


def quantize_activations(model, arguments, config, targets):
    """The FP8 presets declare dynamic FP8 input activations, which compressed-tensors
    applies in the loaded model: apply the same quantization (compressed-tensors' own
    dynamic scales and fake quantization) to the inputs of the decompressed model's
    quantized linear layers (those of the config group's targets), so that both sides
    differ only by their weights."""
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize
    from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp
    from compressed_tensors.utils.match import is_match
    args = QuantizationArgs.model_validate(arguments)

    def hook(module, inputs):
        scale, zero_point = compute_dynamic_scales_and_zp(value=inputs[0], args=args, module=module)
        return (fake_quantize(x=inputs[0], scale=scale, zero_point=zero_point, args=args),) + inputs[1:]

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and is_match(name, module, targets, config["ignore"]):
            module.register_forward_pre_hook(hook)


def dequantized_by_compressed_tensors(folder, work):
    from compressed_tensors.entrypoints.convert import CompressedTensorsDequantizer, convert_checkpoint
    target = os.path.join(work, "model-free")
    shutil.rmtree(target, ignore_errors=True)
    convert_checkpoint(model_stub=folder, save_directory=target,
                       converter=CompressedTensorsDequantizer(folder, dtype=torch.float32), max_workers=1, device="cpu")
    return weights(target)


def weights(folder):
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    return tensors


def report(case, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {case}: {detail}", flush=True)
    (OK if ok else FAILURES).append(f"{case}: {detail}")


def baseline_keys(model_name):
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    _, info = load(os.path.join(ROOT, "Fixtures", fixture), auto, torch.float32)
    return info


def check_quantized(binary, work, model_name, case, arguments, recipe=None, mixed=False, source=None):
    """Quantize (or run a recipe), decompress, and compare every consumer with decompress.
    mixed: a mixed-precision output, whose config groups are checked (check_groups) and
    whose loaded model must carry each group's scheme on exactly its targets (check_schemes).
    source: the input folder, if not the model's fixture (a BF16 copy, bf16_input)."""
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    source = source or os.path.join(ROOT, "Fixtures", fixture)
    out = os.path.join(work, f"{model_name}-{case}")
    dense = out + "-dense"
    if recipe:
        path = os.path.join(work, f"{model_name}-{case}.yaml")
        with open(path, "w") as f:
            f.write(recipe)
        run(binary, "run", path, source, out, "-q")
    else:
        run(binary, "quantize", source, out, *arguments, "-q")
    run(binary, "decompress", out, dense, "-q")
    run(binary, "verify", out)
    config = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    groups = list(config["config_groups"].values())
    # compressed-tensors 0.20 decodes the microscaled formats to BF16 whatever the model's
    # dtype (llm-compressor's own F32 outputs stop on F32 x BF16 matmuls the same way), so
    # they are loaded in BF16 (a mixed checkpoint with any such group too).
    fp4 = any(group.get("format", config["format"]) in MICROSCALED for group in groups)
    dtype = torch.bfloat16 if fp4 else torch.float32
    label = f"{model_name} {case}"
    baseline = BASELINES[model_name]
    if mixed and not check_groups(label, model_name, config, weights(source)):
        return
    # 1. transformers, against decompress.
    asymmetric = any(group["weights"]["type"] == "int" and not group["weights"]["symmetric"] for group in groups)
    how = ""
    try:
        model, info = load(out, auto, dtype)
        if asymmetric:
            report(label, False, "W4A16_ASYM now loads in transformers as written: the upstream limit is gone, update docs/loading.md")
    except Exception as error:  # noqa: BLE001 - any failure is reported
        if not asymmetric:
            report(label, False, f"transformers failed to load it: {error}")
            return
        # compressed-tensors 0.20's empty-model path does not pack the zero point (the
        # same for llm-compressor's own output); decompressing at load time works.
        report(label, True, f"transformers as written: known upstream failure ({str(error).splitlines()[0][:100]})")
        from transformers import CompressedTensorsConfig
        model, info = load(out, auto, dtype, quantization_config=CompressedTensorsConfig(dequantize=True))
        how = " with CompressedTensorsConfig(dequantize=True)"
    extra = {key: info[key] - baseline[key] for key in info}
    if any(extra.values()):
        report(label, False, f"transformers loading info beyond the input's: {extra}")
        return
    if mixed and not check_schemes(label, model, config):
        return
    reference, _ = load(dense, auto, dtype)
    activations = [group for group in groups if group.get("input_activations") is not None]
    for group in activations:
        quantize_activations(reference, group["input_activations"], config, group["targets"])
    ours, theirs = forward(model), forward(reference)
    scale = theirs.abs().max().item()
    difference = (ours - theirs).abs().max().item()
    bound = TOLERANCE["weights"] * (10 if fp4 else 1)
    # In a mixed checkpoint, which groups' weights make any difference.
    weighed = f"; {weight_differences(model, config, weights(dense))}" if mixed else ""
    report(label, difference <= bound * scale,
           f"transformers loads it{how} ({'BF16' if fp4 else 'F32'}), no missing or unexpected keys; "
           f"max |forward - decompress forward{' with FP8 activations' if activations else ''}| = {difference:.3g} "
           f"({difference / scale:.2e} of max {scale:.3g}; bound {bound:g}){weighed}")
    # 2. compressed-tensors' model-free dequantizer, against decompress.
    check_model_free(label, out, dense, work)


def check_model_free(label, out, dense, work):
    """compressed-tensors' model-free dequantizer decodes OUT to exactly decompress's tensors."""
    try:
        decoded = dequantized_by_compressed_tensors(out, work)
    except Exception as error:  # noqa: BLE001
        report(label, False, f"compressed-tensors' model-free dequantizer failed: {error}")
        return
    expected = weights(dense)
    missing = sorted(set(expected) - set(decoded))
    extra = sorted(set(decoded) - set(expected))
    worst = max((decoded[n].float() - expected[n].float()).abs().max().item() for n in expected if n in decoded)
    report(label, not missing and not extra and worst == 0,
           f"model-free dequantizer: {len(decoded)} tensors, max |difference| from decompress = {worst:.3g}"
           + (f", missing {missing[:3]}" if missing else "") + (f", extra {extra[:3]}" if extra else ""))


def relative_weight_differences(model, config, expected):
    """Per config group key (and "kept" for the linear modules no group names), the largest
    difference between the weights the loaded model computed (after a forward pass) and
    decompress's weights in the loaded model's dtype, relative to each module's largest weight."""
    owner = {target: key for key, group in config["config_groups"].items() for target in group["targets"]}
    worst = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        ours, theirs = module.weight.detach(), expected[name + ".weight"]
        relative = ((ours.float() - theirs.to(ours.dtype).float()).abs().max() / theirs.abs().max()).item()
        key = owner.get(name, "kept")
        worst[key] = max(worst.get(key, 0.0), relative)
    return worst


def weight_differences(model, config, expected, worst=None):
    """relative_weight_differences, described: where the forward passes differ, which
    modules make the difference."""
    worst = worst if worst is not None else relative_weight_differences(model, config, expected)
    groups = config["config_groups"]
    return "loaded weights vs decompress's in " + str(next(model.parameters()).dtype).removeprefix("torch.") + ": " + ", ".join(
        f"{key}" + (f" ({groups[key]['format']} {groups[key]['weights']['type']}{groups[key]['weights']['num_bits']})"
                    if key in groups else "") + f" {value:.2e}" for key, value in sorted(worst.items()))


def check_groups(label, model_name, config, tensors):
    """A mixed-precision quantization_config: more than one config group; each group's
    targets are exact module names of the input, in no other group and not ignored; the
    shards vLLM fuses (FUSED) are in one group (or all kept); the top-level format is the
    groups' shared format, or `mixed-precision` when they differ."""
    groups = config["config_groups"]
    modules = {name[: -len(".weight")] for name in tensors if name.endswith(".weight")}
    owner, problems = {}, []
    for key, group in groups.items():
        for target in group["targets"]:
            if target not in modules:
                problems.append(f"{key} target {target!r} is not a module name of the input")
            if target in owner:
                problems.append(f"{target} in both {owner[target]} and {key}")
            if target in config["ignore"]:
                problems.append(f"{target} in {key} and in ignore")
            owner.setdefault(target, key)
    if len(groups) < 2:
        problems.append(f"{len(groups)} config group")
    formats = sorted({group["format"] for group in groups.values()})
    expected = formats[0] if len(formats) == 1 else "mixed-precision"
    if config["format"] != expected:
        problems.append(f"top-level format {config['format']!r} for group formats {formats}")
    fused = 0
    for shards in FUSED[model_name]:
        for module in sorted(modules):
            if not module.endswith("." + shards[0]):
                continue
            stem = module[: -len(shards[0])]
            where = {shard: owner.get(stem + shard, "ignore" if stem + shard in config["ignore"] else None)
                     for shard in shards}
            fused += 1
            if len(set(where.values())) != 1:
                problems.append(f"fused shards of {stem[:-1]} split: {where}")
    report(label, not problems,
           "; ".join(problems) if problems else
           f"config: {len(groups)} groups ({', '.join(formats)}; top-level format {config['format']}), "
           f"{len(owner)} targets, exact module names, disjoint, none ignored ({len(config['ignore'])} ignored); "
           f"the shards of {fused} fused layers share a group")
    return not problems


def check_schemes(label, model, config):
    """The model transformers loaded carries, on every linear module a config group names,
    that group's format and weight arguments, and no scheme on the other linear modules."""
    from compressed_tensors.quantization import QuantizationArgs
    owner = {target: group for group in config["config_groups"].values() for target in group["targets"]}
    problems, quantized, plain = [], 0, 0
    for name, module in model.named_modules():
        scheme = getattr(module, "quantization_scheme", None)
        if not isinstance(module, torch.nn.Linear) and scheme is None:
            continue
        group = owner.pop(name, None)
        if group is None:
            plain += 1
            if scheme is not None:
                problems.append(f"{name} not in any group but loaded with {scheme.format} {scheme.weights}")
            continue
        quantized += 1
        wanted = QuantizationArgs.model_validate(group["weights"])
        if scheme is None:
            problems.append(f"{name} loaded without a quantization scheme (group format {group['format']})")
        elif str(getattr(scheme.format, "value", scheme.format)) != group["format"] or scheme.weights != wanted:
            problems.append(f"{name} loaded as {scheme.format} {scheme.weights}, its group says {group['format']} {wanted}")
    problems += [f"target {name} is not a module of the loaded model" for name in owner]
    report(label, not problems,
           "; ".join(problems[:4]) if problems else
           f"transformers applied each group's scheme to exactly its {quantized} targets, "
           f"none to the {plain} other linear modules")
    return not problems


def check_online(binary, work, model_name, case, arguments):
    """quantize --rotate block-hadamard:B: transformers loads the checkpoint but does not apply
    transform_config (its outputs are wrong: measured and required to be far off); with
    compressed-tensors' own online transform attached (`apply_transform_config` with the
    config's `input` entries, the ones vLLM applies at run time; the `weight_input` entries
    are already fused into the stored weights), the loaded model computes what
    `swiftcompress decompress`'s dense model computes."""
    from compressed_tensors.transform import TransformConfig, apply_transform_config
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    source = os.path.join(ROOT, "Fixtures", fixture)
    out = os.path.join(work, f"{model_name}-{case}")
    dense = out + "-dense"
    run(binary, "quantize", source, out, *arguments, "-q")
    run(binary, "decompress", out, dense, "-q")
    verified = run(binary, "verify", out)
    label = f"{model_name} {case}"
    if "transformers 5.x does not" not in verified.stderr:
        report(label, False, f"verify did not warn about transform_config: {verified.stderr}")
    config = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    fp4 = config["format"] in ("mxfp4-pack-quantized", "nvfp4-pack-quantized")
    dtype = torch.bfloat16 if fp4 else torch.float32
    model, info = load(out, auto, dtype)
    baseline = BASELINES[model_name]
    extra = {key: info[key] - baseline[key] for key in info}
    matrices = {key for key in extra["unexpected_keys"] if key.endswith("v_input.weight")}
    if extra["missing_keys"] or extra["mismatched_keys"] or extra["unexpected_keys"] - matrices:
        report(label, False, f"transformers loading info beyond the input's and the transform matrix: {extra}")
        return
    if fp4:
        # MXFP4/NVFP4 of an F32 model load only in BF16 (upstream); their values are exact
        # in BF16, so after the first forward has decompressed them the model is compared in F32.
        forward(model)
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.data = tensor.data.float()
    reference, _ = load(dense, auto, torch.float32)
    if fp4:
        # The tensors kept dense (embeddings, norms, biases, lm_head) were rounded to BF16 by the BF16
        # load: give them back their F32 values, so that only the rotated weights differ.
        from compressed_tensors.utils.match import match_name
        kept = dict(reference.named_parameters())
        for name, module in model.named_modules():
            rotated = isinstance(module, torch.nn.Linear) and not any(match_name(name, i) for i in config["ignore"])
            for key, parameter in module.named_parameters(recurse=False):
                if rotated and key != "bias":
                    continue
                full = f"{name}.{key}" if name else key
                if full in kept:
                    parameter.data = kept[full].data.clone()
    theirs = forward(reference)
    scale = theirs.abs().max().item()
    plain = (forward(model) - theirs).abs().max().item()
    report(label, plain > 1e-2 * scale,
           f"transformers alone (transform_config not applied; unexpected keys {sorted(matrices)}): "
           f"max |forward - decompress forward| = {plain:.3g} ({plain / scale:.2e} of max {scale:.3g}): wrong, as documented")
    online = TransformConfig.model_validate(config["transform_config"])
    for scheme in online.config_groups.values():
        scheme.apply = [args for args in scheme.apply if args.location == "input"]
    apply_transform_config(model, online)
    difference = (forward(model) - theirs).abs().max().item()
    bound = TOLERANCE["weights"]
    report(label, difference <= bound * scale,
           f"transformers + compressed-tensors' online input transform ({'loaded in BF16, run in F32' if fp4 else 'F32'}): "
           f"max |forward - decompress forward| = {difference:.3g} ({difference / scale:.2e} of max {scale:.3g}; bound {bound:g})")
    # compressed-tensors' model-free dequantizer decodes the stored W R and does not undo R (and
    # its config.json drops transform_config): times R, its weights are decompress's.
    import math
    from compressed_tensors.transform.utils.hadamard import deterministic_hadamard_matrix
    from compressed_tensors.utils.match import match_name
    decoded = dequantized_by_compressed_tensors(out, work)
    expected = weights(dense)
    block = online.config_groups["v"].head_dim
    hadamard = deterministic_hadamard_matrix(block, torch.float64) / math.sqrt(block)
    worst, rotated = 0.0, 0
    for name, value in expected.items():
        module = name[: -len(".weight")]
        if not name.endswith(".weight") or value.dim() != 2 or name not in decoded or any(
                match_name(module, i) for i in config["ignore"]):
            continue
        back = (decoded[name].double().unflatten(-1, (-1, block)) @ hadamard).flatten(-2)
        worst = max(worst, (back - value.double()).abs().max().item() / value.abs().max().item())
        rotated += 1
    kept = json.load(open(os.path.join(work, "model-free", "config.json"))).get("quantization_config", {}).get("transform_config")
    report(label, rotated > 0 and worst <= 1e-6,
           f"model-free dequantizer: decodes W R without undoing R (config keeps transform_config: {bool(kept)}); "
           f"times R, {rotated} weights equal decompress's within {worst:.2e} of their largest value")


def check_guarded(binary, work, model_name, case, command):
    """Layouts no standard loader reads: refused without trust_remote_code; with it,
    factorized weights compute what decompress computes, the rest refuse loudly."""
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    source = os.path.join(ROOT, "Fixtures", fixture)
    out = os.path.join(work, f"{model_name}-{case}")
    dense = out + "-dense"
    if command[0] == "run":
        run(binary, "run", command[1], source, out, "-q")
    else:
        run(binary, command[0], source, out, *command[1:], "-q")
    run(binary, "decompress", out, dense, "-q")
    run(binary, "verify", out)
    label = f"{model_name} {case}"
    try:
        load(out, auto, torch.float32)
        report(label, False, "transformers loaded it without trust_remote_code")
        return
    except Exception as error:  # noqa: BLE001
        refusal = str(error).splitlines()[0]
        if "trust_remote_code" not in str(error) and "custom code" not in str(error):
            report(label, False, f"refused for another reason: {refusal}")
            return
    loadable = json.load(open(os.path.join(out, "config.json")))["swiftcompress_loader"]["layouts"] == ["factorized weights"]
    try:
        model, info = load(out, auto, torch.float32, trust=True)
    except Exception as error:  # noqa: BLE001
        message = str(error)
        ok = not loadable and "swiftcompress decompress" in message
        report(label, ok, f"refused without trust_remote_code; with it: {message.splitlines()[0][:160]}")
        return
    if not loadable:
        report(label, False, "loaded with trust_remote_code although its layout cannot be computed")
        return
    extra = {key: info[key] - BASELINES[model_name][key] for key in info}
    reference, _ = load(dense, auto, torch.float32)
    ours, theirs = forward(model), forward(reference)
    scale = theirs.abs().max().item()
    difference = (ours - theirs).abs().max().item()
    ok = not any(extra.values()) and difference <= TOLERANCE["weights"] * scale
    report(label, ok, f"refused without trust_remote_code; with it loads ({extra if any(extra.values()) else 'no missing or unexpected keys'}), "
                      f"max |forward - decompress forward| = {difference:.3g} ({difference / scale:.2e} of max {scale:.3g})")


def calibration_tokens(work, model_name):
    """The calibration options of the calibrated methods. The fixtures have no tokenizer.json,
    so the samples are token ids drawn (seeded) from the model's vocabulary, written as JSON
    lines (one array of ids per sample)."""
    fixture = MODELS[model_name][0]
    vocabulary = json.load(open(os.path.join(ROOT, "Fixtures", fixture, "config.json")))["vocab_size"]
    ids = torch.randint(0, vocabulary, (CALIBRATION["samples"], CALIBRATION["seq_len"]),
                        generator=torch.Generator().manual_seed(15))
    path = os.path.join(work, f"calibration-tokens.{model_name}.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in ids.tolist())
    return ["--tokens", path, "--samples", str(CALIBRATION["samples"]), "--seq-len", str(CALIBRATION["seq_len"])]


def check_dense(binary, work, model_name, case, command, against_input=False):
    """Outputs written as a plain dense model (calibrated pruning with zeros in place, a
    rotation): no quantization_config or guard, `decompress` refuses it (nothing to decode),
    transformers loads it with no missing or unexpected keys and holds exactly the written
    tensors; its forward pass equals that of the input architecture holding the written
    tensors (against_input: that of the input model itself, for a rotation, which changes
    the weights but not the function)."""
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    source = os.path.join(ROOT, "Fixtures", fixture)
    out = os.path.join(work, f"{model_name}-{case}")
    dense = out + "-dense"
    run(binary, command[0], source, out, *command[1:], "-q")
    run(binary, "verify", out)
    label = f"{model_name} {case}"
    config = json.load(open(os.path.join(out, "config.json")))
    stray = [key for key in ("quantization_config", "sparsity_config", "auto_map", "swiftcompress_loader") if key in config]
    if stray or config.get("model_type") != json.load(open(os.path.join(source, "config.json"))).get("model_type"):
        report(label, False, f"not a plain dense checkpoint: config.json has {stray}, model_type {config.get('model_type')}")
        return
    model, info = load(out, auto, torch.float32)
    extra = {key: info[key] - BASELINES[model_name][key] for key in info}
    if any(extra.values()):
        report(label, False, f"transformers loading info beyond the input's: {extra}")
        return
    notes = []
    written, original = weights(out), weights(source)
    # decompress refuses a plain dense checkpoint (there is nothing to decode): what it would
    # compute is the written tensors themselves, which the loaded model must hold exactly.
    refusal = run(binary, "decompress", out, dense, "-q", expect=65).stderr
    if "not a compressed-tensors checkpoint" not in refusal:
        report(label, False, f"decompress refused it for another reason: {refusal.strip()[:160]}")
        return
    state = model.state_dict()
    held = [name for name in written if name in state]
    loaded = max(((state[name].float() - written[name].float()).abs().max().item() for name in held), default=1.0)
    notes.append(f"holds the {len(held)} written tensors with max |difference| {loaded:.3g}"
                 + "".join(f" ({name}: not a model parameter)" for name in written if name not in state))
    if loaded != 0 or not held:
        report(label, False, "; ".join(notes))
        return
    if against_input:
        reference, _ = load(source, auto, torch.float32)
        what = "original model's forward"
    else:
        # The same architecture from the input folder with the written tensors put in place.
        reference, _ = load(source, auto, torch.float32)
        reference.load_state_dict({name: written[name] for name in held}, strict=False)
        what = "forward of the input model holding the written tensors"
    pattern = next((argument for argument in command if ":" in argument and argument[0].isdigit()), None)
    if pattern:
        # Every weight the method changed keeps at most n nonzeros in each group of m inputs.
        n, m = map(int, pattern.split(":"))
        changed = [name for name in written if not torch.equal(written[name], original[name])]
        broken = [name for name in changed
                  if ((written[name].reshape(-1, m) != 0).sum(dim=1) > n).any()]
        notes.append(f"{len(changed) - len(broken)} of {len(changed)} pruned weights {pattern}")
        if broken or not changed:
            report(label, False, f"weights not {pattern}: {broken[:3]}")
            return
    if against_input:
        head, embedding = (written.get("lm_head.weight"), written.get("model.embed_tokens.weight"))
        untied = head is not None and not config.get("tie_word_embeddings", True) and not torch.equal(head, embedding)
        changed = sum(not torch.equal(written[name], original[name]) for name in written if name in original)
        notes.append(f"{changed} of {len(written)} tensors rotated, "
                     f"lm_head {'untied' if untied else 'TIED (expected untied)'}")
        if not untied:
            report(label, False, "; ".join(notes))
            return
    ours, theirs = forward(model), forward(reference)
    scale = theirs.abs().max().item()
    difference = (ours - theirs).abs().max().item()
    report(label, difference <= TOLERANCE["weights"] * scale,
           f"plain dense, transformers loads it (F32), no missing or unexpected keys; " + "".join(n + "; " for n in notes)
           + f"max |forward - {what}| = {difference:.3g} ({difference / scale:.2e} of max {scale:.3g}; "
           f"bound {TOLERANCE['weights']:g})")


def recipe(scheme, targets=None, exclude=None, override=None):
    lines = ["stages:", "  - quantize:", f"      scheme: {scheme}"]
    if targets:
        lines.append(f"      targets: {json.dumps(targets)}")
    if exclude:
        lines.append(f"      exclude: {json.dumps(exclude)}")
    if override:
        lines += ["      overrides:", f"        - targets: {json.dumps([override])}", "          skip: true"]
    return "\n".join(lines) + "\n"


def online_cases(binary, work):
    """The online block-wise rotation (quantize --rotate block-hadamard:B)."""
    for model_name in MODELS:
        data = calibration_tokens(work, model_name)
        cases = {
            "W4A16-g32-block16": ["--scheme", "W4A16", "--group-size", "32", "--rotate", "block-hadamard:16"],
            "MXFP4A16-block32": ["--scheme", "MXFP4A16", "--rotate", "block-hadamard:32"],
            "W4A16-block128-gptq": ["--scheme", "W4A16", "--rotate", "block-hadamard:128", "--method", "gptq", *data],
        }
        for case, arguments in cases.items():
            guarded(lambda: check_online(binary, work, model_name, case, arguments), model_name, case)


def mixed_cases(binary, work, model_name):
    """Mixed precision: --scheme-for rules (MIXED) on both models, and the --target-bpw
    allocations (ALLOCATIONS) on the Llama. The integer + FP4 mixes (MIXED_ON_BF16) run on a
    BF16 input (case name suffixed -bf16); the Llama's --scheme-for mix also runs on the F32
    fixture as an upstream-limit check (check_mixed_f32)."""
    cases = {"mixed-scheme-for": MIXED[model_name]}
    if model_name == "llama":
        cases.update({f"mixed-{case}": arguments for case, arguments in ALLOCATIONS.items()})
    for case, arguments in cases.items():
        if case in MIXED_ON_BF16[model_name]:
            guarded(lambda: check_quantized(binary, work, model_name, case + "-bf16", arguments, mixed=True,
                                            source=bf16_input(binary, work, model_name)), model_name, case + "-bf16")
        else:
            guarded(lambda: check_quantized(binary, work, model_name, case, arguments, mixed=True), model_name, case)
    if model_name == "llama":
        guarded(lambda: check_mixed_f32(binary, work, model_name, "mixed-scheme-for-f32", MIXED[model_name]),
                model_name, "mixed-scheme-for-f32")


def bf16_input(binary, work, model_name):
    """The model's BF16 input: its BF16 fixture, or its fixture with every float tensor
    converted to BF16 by `swiftcompress convert` (config.json's torch_dtype too) into WORK."""
    if model_name in BF16_FIXTURES:
        return os.path.join(ROOT, "Fixtures", BF16_FIXTURES[model_name])
    out = os.path.join(work, f"{MODELS[model_name][0]}-bf16")
    run(binary, "convert", os.path.join(ROOT, "Fixtures", MODELS[model_name][0]), out, "--dtype", "BF16",
        "--include", ".", "-q")
    dtypes = {str(tensor.dtype) for tensor in weights(out).values() if tensor.is_floating_point()}
    if dtypes != {"torch.bfloat16"}:
        raise RuntimeError(f"swiftcompress convert --dtype BF16 left float tensors in {sorted(dtypes)}")
    return out


def check_mixed_f32(binary, work, model_name, case, arguments):
    """Upstream limit: an F32 checkpoint mixing integer and FP4 groups. compressed-tensors
    0.20.1 decodes FP4 to BF16 whatever the model's dtype, so in F32 the forward pass stops on
    an F32 x BF16 matmul ("expected m1 and m2 to have the same dtype"); in BF16 it creates the
    integer groups' weight_scale in BF16, so their weights are up to one BF16 step off
    decompress's (which uses the stored F32 scale). Checked to still be so: an F32 load that
    works, or integer weights equal to decompress's, fails the case (update docs/loading.md).
    The config groups, the schemes, the keys and the model-free dequantizer are checked as in
    check_quantized."""
    fixture, auto = MODELS[model_name][0], MODELS[model_name][1]
    source = os.path.join(ROOT, "Fixtures", fixture)
    out = os.path.join(work, f"{model_name}-{case}")
    dense = out + "-dense"
    label = f"{model_name} {case}"
    run(binary, "quantize", source, out, *arguments, "-q")
    run(binary, "decompress", out, dense, "-q")
    run(binary, "verify", out)
    config = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    groups = config["config_groups"]
    kinds = {key: "fp4" if group["format"] in MICROSCALED else group["weights"]["type"] for key, group in groups.items()}
    if not {"fp4", "int"} <= set(kinds.values()):
        report(label, False, f"not an integer + FP4 mix: groups {kinds}")
        return
    if not check_groups(label, model_name, config, weights(source)):
        return
    expected = weights(dense)
    # F32: the upstream error, or (fixed upstream) decompress's forward pass.
    try:
        model, _ = load(out, auto, torch.float32)
        ours = forward(model)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        report(label, "same dtype" in first,
               f"F32 load: known upstream failure ({first[:110]})" if "same dtype" in first else
               f"F32 load failed, but not with the known dtype error: {first[:200]}")
    else:
        reference, _ = load(dense, auto, torch.float32)
        theirs = forward(reference)
        difference = ((ours - theirs).abs().max() / theirs.abs().max()).item()
        report(label, False, f"F32 load now works (forward {difference:.2e} of max from decompress's): the upstream "
                             f"limit is gone, update docs/loading.md and run this mix with the other mixed cases")
    # BF16: loads, every group's scheme on its targets, weights within one BF16 step.
    model, info = load(out, auto, torch.bfloat16)
    extra = {key: info[key] - BASELINES[model_name][key] for key in info}
    if any(extra.values()):
        report(label, False, f"transformers loading info beyond the input's: {extra}")
        return
    if not check_schemes(label, model, config):
        return
    ours = forward(model)
    reference, _ = load(dense, auto, torch.bfloat16)
    theirs = forward(reference)
    difference = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    worst = relative_weight_differences(model, config, expected)
    integer = max(value for key, value in worst.items() if kinds.get(key) == "int")
    others = max((value for key, value in worst.items() if kinds.get(key) != "int"), default=0.0)
    detail = (f"BF16 load: integer groups' weights at most {integer:.2e} of each module's largest weight from "
              f"decompress's (bound {BF16_STEP:g}), the others {others:.2e}; forward {difference:.2e} of max from "
              f"decompress's in BF16; {weight_differences(model, config, expected, worst)}")
    if integer == 0:
        report(label, False, "BF16 load: the integer groups' weights now equal decompress's: the upstream limit is "
                             "gone, update docs/loading.md; " + detail)
    else:
        report(label, integer <= BF16_STEP and others == 0, "known upstream limit; " + detail)
    check_model_free(label, out, dense, work)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    only = sys.argv[3] if len(sys.argv) > 3 else None  # "online" or "mixed": only those cases
    os.makedirs(work, exist_ok=True)
    global BASELINES
    BASELINES = {name: baseline_keys(name) for name in MODELS}
    for name, keys in BASELINES.items():
        print(f"input {name}: transformers loading info of the fixture itself: "
              f"{ {k: sorted(v) for k, v in keys.items() if v} or 'clean'}")
    if only == "mixed":
        for model_name in MODELS:
            mixed_cases(binary, work, model_name)
        finish()
        return
    online_cases(binary, work)
    if only == "online":
        finish()
        return
    for model_name, (_, _, mlp, attention, layer) in MODELS.items():
        for scheme in SCHEMES:
            guarded(lambda: check_quantized(binary, work, model_name, scheme, ["--scheme", scheme]), model_name, scheme)
        for bits in ("W8A16", "W4A16"):
            guarded(lambda: check_quantized(binary, work, model_name, bits + "-channel",
                                            ["--scheme", bits, "--group-size", "0"]), model_name, bits + "-channel")
        for scheme in SCHEMES:
            cases = {
                f"{scheme}-exclude": dict(arguments=["--scheme", scheme, "--exclude", mlp]),
                f"{scheme}-include": dict(arguments=["--scheme", scheme, "--include", attention]),
                f"{scheme}-recipe-targets": dict(arguments=None, recipe=recipe(scheme, targets=[attention])),
                f"{scheme}-recipe-exclude": dict(arguments=None, recipe=recipe(scheme, exclude=[layer])),
                f"{scheme}-recipe-skip": dict(arguments=None, recipe=recipe(scheme, override=mlp)),
            }
            for case, spec in cases.items():
                guarded(lambda: check_quantized(binary, work, model_name, case, spec["arguments"], spec.get("recipe")),
                        model_name, case)
        mixed_cases(binary, work, model_name)
        residual = os.path.join(work, "residual.yaml")
        with open(residual, "w") as f:
            f.write("stages:\n  - quantize:\n      scheme: W4A16\n      group_size: 32\n      residual_rank: 8\n"
                    "      residual_iterations: 2\n      targets: [Linear]\n")
        factors = os.path.join(work, "factors.yaml")
        with open(factors, "w") as f:
            f.write("stages:\n  - factorize:\n      method: rsvd\n      rank: 32\n      targets: [Linear]\n"
                    "  - quantize:\n      scheme: W8A16\n      group_size: 0\n      targets: [Linear]\n")
        for case, command in {
            "factorized": ["factorize", "--method", "svd", "--rank", "16"],
            "factorized-rsvd": ["factorize", "--method", "rsvd", "--energy", "0.9"],
            "bitmask": ["prune", "--method", "magnitude", "--sparsity", "0.5", "--sparse-format", "bitmask"],
            "bitmask-2of4": ["prune", "--method", "nm", "--pattern", "2:4", "--sparse-format", "bitmask"],
            "lowrank-residual": ["run", residual],
            "quantized-factors": ["run", factors],
        }.items():
            guarded(lambda: check_guarded(binary, work, model_name, case, command), model_name, case)
        # The calibrated methods.
        data = calibration_tokens(work, model_name)
        for scheme in GPTQ_SCHEMES:
            guarded(lambda: check_quantized(binary, work, model_name, f"{scheme}-gptq",
                                            ["--scheme", scheme, "--method", "gptq", *data]), model_name, f"{scheme}-gptq")
        # The least-squares refit rewrites values and integer scales in the same layout.
        for scheme in ("W4A16", "NVFP4A16"):
            guarded(lambda: check_quantized(binary, work, model_name, f"{scheme}-gptq-refit",
                                            ["--scheme", scheme, "--method", "gptq", "--refit", "ls", *data]),
                    model_name, f"{scheme}-gptq-refit")
        if model_name == "llama":
            guarded(lambda: check_quantized(binary, work, model_name, "W4A16-gptq-rotate",
                                            ["--scheme", "W4A16", "--method", "gptq", "--rotate", "hadamard", *data]),
                    model_name, "W4A16-gptq-rotate")
            guarded(lambda: check_dense(binary, work, model_name, "rotate", ["rotate"], against_input=True),
                    model_name, "rotate")
        for method in ("sparsegpt", "wanda"):
            guarded(lambda: check_dense(binary, work, model_name, f"{method}-2of4",
                                        ["prune", "--method", method, "--pattern", "2:4", *data]),
                    model_name, f"{method}-2of4")
        for case, command in {
            "sparsegpt-2of4-bitmask": ["prune", "--method", "sparsegpt", "--pattern", "2:4", *data,
                                       "--sparse-format", "bitmask"],
            "wanda-bitmask": ["prune", "--method", "wanda", "--sparsity", "0.5", *data, "--sparse-format", "bitmask"],
            "factorized-svd-llm": ["factorize", "--method", "svd-llm", "--rank", "16", *data],
            "factorized-asvd": ["factorize", "--method", "asvd", "--ratio", "0.5", *data],
        }.items():
            guarded(lambda: check_guarded(binary, work, model_name, case, command), model_name, case)
    finish()


def finish():
    if FAILURES:
        print(f"\n{len(OK)} ok, {len(FAILURES)} FAILED:\n" + "\n".join(FAILURES))
        sys.exit(1)
    print(f"\ninterop loading: every case passed ({len(OK)} ok, 0 failed)")


def guarded(body, model_name, case):
    try:
        body()
    except Exception as error:  # noqa: BLE001 - a crash is a failure of that case, the others still run
        traceback.print_exc()
        report(f"{model_name} {case}", False, f"crashed: {error}")


if __name__ == "__main__":
    main()
