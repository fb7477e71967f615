# swiftcompress — make demo (set up, build, run a recipe on a bundled fixture), make test.
SWIFT    ?= swift
VENV     := .build/venv
PY       := $(VENV)/bin/python
BIN      := .build/release/swiftcompress
DEMO_OUT := .build/demo/tiny-llama-bf16
BENCH_DIR := .build/bench-data
RENDER_DIR := .build/render

export SWIFTCOMPRESS_PYTHON := $(abspath $(PY))

.PHONY: all setup venv build debug test demo render-report bench bench-llama bench-forward bench-calibrated bench-mixed bench-scale interop fixtures fuzz fuzz-build fuzz-merge lint format clean

all: build

## setup: install the system libraries (OpenBLAS, LAPACKE, zlib) when missing
setup:
	@Scripts/install-deps.sh

## venv: Python references for tests and fixtures (numpy, safetensors, ml_dtypes) in .build/venv
venv: $(VENV)/.installed
$(VENV)/.installed: Scripts/requirements.txt
	@mkdir -p .build
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r Scripts/requirements.txt
	@touch $@

## build: release build of the swiftcompress executable, the Swift runtime and Foundation linked in statically
## (--static-swift-stdlib: no dynamic linking of two dozen Swift libraries at every start, about 10 ms a run)
build: setup
	$(SWIFT) build -c release --product swiftcompress --static-swift-stdlib

## test: the whole test suite (unit, golden, CLI and Python interoperability tests)
test: setup venv
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

## demo: build, then compress the bundled tiny Llama (BF16) with a recipe (2:4 pruning then NVFP4): plan, run, report,
## and the compressed model's KL divergence from the original on fixed tokens (evaluate)
demo: build
	@rm -rf $(DEMO_OUT)
	@mkdir -p $(dir $(DEMO_OUT))
	$(BIN) inspect Fixtures/tiny-llama-bf16
	$(BIN) verify Fixtures/tiny-llama-bf16
	$(BIN) run docs/examples/recipes/sparse24-nvfp4.yaml Fixtures/tiny-llama-bf16 $(DEMO_OUT) --dry-run
	$(BIN) run docs/examples/recipes/sparse24-nvfp4.yaml Fixtures/tiny-llama-bf16 $(DEMO_OUT)
	$(BIN) diff Fixtures/tiny-llama-bf16 $(DEMO_OUT) --include mlp
	$(BIN) evaluate Fixtures/tiny-llama-bf16 $(DEMO_OUT) --tokens Fixtures/golden/evaluation/tokens.tiny-llama-f32.jsonl
	@echo
	@cat $(DEMO_OUT)/swiftcompress-report.md
	@echo
	@echo "Report with chart: $(DEMO_OUT)/swiftcompress-report.html; recipe to reproduce it: $(DEMO_OUT)/swiftcompress-recipe.yaml"

## bench: identity pass, quantize, prune and factorize over a >=512 MB generated checkpoint vs memcpy and numpy, peak RSS;
## then bench-llama (quantize vs llama.cpp's llama-quantize), bench-forward (forward pass vs transformers, calibrate and evaluate memory) and bench-calibrated (GPTQ, SparseGPT
## and Wanda vs llm-compressor)
bench: build venv
	$(SWIFT) build -c release --product swiftcompress-bench
	@test -f $(BENCH_DIR)/f32/model.safetensors || $(PY) Scripts/make_bench_checkpoint.py $(BENCH_DIR)/f32 --dtype f32
	@test -f $(BENCH_DIR)/bf16/model.safetensors || $(PY) Scripts/make_bench_checkpoint.py $(BENCH_DIR)/bf16 --dtype bf16
	.build/release/swiftcompress-bench pipeline --checkpoint $(BENCH_DIR)/f32 --swiftcompress $(BIN)
	.build/release/swiftcompress-bench quantize --checkpoint $(BENCH_DIR)/f32 --swiftcompress $(BIN) --python $(PY) --numpy-script Benchmarks/quantize_numpy.py
	.build/release/swiftcompress-bench quantize --checkpoint $(BENCH_DIR)/bf16 --swiftcompress $(BIN) --python $(PY) --numpy-script Benchmarks/quantize_numpy.py
	.build/release/swiftcompress-bench prune --checkpoint $(BENCH_DIR)/f32 --swiftcompress $(BIN) --python $(PY) --numpy-script Benchmarks/prune_numpy.py
	.build/release/swiftcompress-bench factorize --python $(PY) --numpy-script Benchmarks/factorize_numpy.py --work $(BENCH_DIR)/factorize
	$(MAKE) bench-llama
	$(MAKE) bench-mixed
	$(MAKE) bench-forward
	$(MAKE) bench-calibrated

## bench-llama: swiftcompress quantize against llama.cpp's llama-quantize (W4A16/Q4_0, W8A16/Q8_0, MXFP4, NVFP4; F32
## and BF16 inputs; whole process, ratios and memcpy of the same run, peak RSS on disk and tmpfs, mse vs round-to-nearest).
## Dev-only: downloads the llama-cpp-python 0.3.36 sdist from PyPI and builds its llama.cpp (cmake, -DGGML_NATIVE=ON)
## under .build/llama; gguf-py from that sdist writes the GGUF input. Needs cmake and a C++ compiler (installed with apt).
LLAMA_DIR := .build/llama
bench-llama: build
	@Scripts/install-deps.sh cmake g++
	@test -x $(LLAMA_DIR)/venv/bin/python || python3 -m venv $(LLAMA_DIR)/venv
	$(LLAMA_DIR)/venv/bin/python Benchmarks/llama_quantize.py --swiftcompress $(BIN) --work $(LLAMA_DIR) --mse

## bench-mixed: mixed precision (docs/mixed-precision.md): analyze over every candidate against the sum of one quantize
## per candidate and quantize --target-bpw, on the >=512 MB benchmark checkpoint; then the allocation's measured KL
## divergence against every single scheme within the same bits per weight, on the tiny Llama with outlier channels and,
## when the torch venv of make interop is there, the generated ~100M Llama. Writes Benchmarks/results/mixed-precision.json.
MIXED_JSON := Benchmarks/results/mixed-precision.json
bench-mixed: build venv
	@test -f $(BENCH_DIR)/f32/model.safetensors || $(PY) Scripts/make_bench_checkpoint.py $(BENCH_DIR)/f32 --dtype f32
	$(PY) Benchmarks/mixed_precision.py speed --swiftcompress $(BIN) --checkpoint $(BENCH_DIR)/f32 --json $(MIXED_JSON)
	$(PY) Benchmarks/mixed_precision.py quality --swiftcompress $(BIN) --model Fixtures/tiny-llama-f32 \
	  --eval Fixtures/golden/evaluation/tokens.tiny-llama-f32.jsonl --samples 32 --hessians --budgets 4.3 4.6 5.0 6.0 --json $(MIXED_JSON)
	@if test -x $(INTEROP_VENV)/bin/python; then \
	  test -f $(FORWARD_DIR)/llama-110m/model.safetensors || $(INTEROP_VENV)/bin/python Scripts/make_bench_model.py $(FORWARD_DIR)/llama-110m; \
	  $(PY) Benchmarks/mixed_precision.py quality --swiftcompress $(BIN) --model $(FORWARD_DIR)/llama-110m --hessians \
	    --budgets 4.3 4.6 5.0 6.0 --out .build/bench-mixed/quality-110m --json $(MIXED_JSON); \
	else echo "bench-mixed: no $(INTEROP_VENV) (make interop installs it): the ~100M Llama is skipped"; fi

## bench-scale: peak memory of quantize, prune and factorize on a generated 8.9 GB sharded checkpoint (~20 GB of disk while it runs)
SCALE_DIR := .build/bench-scale
bench-scale: build venv
	@test -f $(SCALE_DIR)/f32/model.safetensors.index.json || $(PY) Scripts/make_scale_checkpoint.py $(SCALE_DIR)/f32
	$(PY) Benchmarks/scale.py $(BIN) $(SCALE_DIR)/f32 $(SCALE_DIR)

## interop: every output loads where it says it does (Tests/Interop/check_loading.py: transformers 5 with
## compressed-tensors 0.20 loads each scheme and mixed selection on a Llama and a BERT fixture and computes what
## decompress computes; compressed-tensors' model-free dequantizer decodes it to the same tensors; the layouts no
## standard loader reads refuse to load), and structurally shrunk models load (check_pruning.py).
## Installs Scripts/interop-requirements.txt (torch, ~6 GB) into .build/interop-venv; not part of make test.
INTEROP_VENV := .build/interop-venv
interop: build $(INTEROP_VENV)/.installed
	$(INTEROP_VENV)/bin/python Tests/Interop/check_loading.py $(BIN) .build/interop
	$(INTEROP_VENV)/bin/python Tests/Interop/check_pruning.py $(BIN) .build/interop
$(INTEROP_VENV)/.installed: Scripts/interop-requirements.txt
	@mkdir -p .build
	test -x $(INTEROP_VENV)/bin/python || python3 -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check -r Scripts/interop-requirements.txt
	@touch $@

## bench-forward: CPU forward pass tokens/s against transformers float32 at the same thread count (THREADS, default
## all cores) on a generated ~110M-parameter Llama (Scripts/make_bench_model.py, not committed); needs the torch venv
## of `make interop` (.build/interop-venv)
FORWARD_DIR := .build/bench-forward
THREADS ?= $(shell nproc)
bench-forward: build venv $(INTEROP_VENV)/.installed
	$(SWIFT) build -c release --product swiftcompress-bench
	@test -f $(FORWARD_DIR)/llama-110m/model.safetensors || $(INTEROP_VENV)/bin/python Scripts/make_bench_model.py $(FORWARD_DIR)/llama-110m
	@test -f $(FORWARD_DIR)/llama-large/model.safetensors || $(PY) Scripts/make_large_model.py $(FORWARD_DIR)/llama-large
	.build/release/swiftcompress-bench forward-memory --model $(FORWARD_DIR)/llama-large --swiftcompress $(BIN) --threads $(THREADS)
	.build/release/swiftcompress-bench forward --model $(FORWARD_DIR)/llama-110m --threads $(THREADS) --sequences 4 --length 256 --runs 3 --python $(INTEROP_VENV)/bin/python --script Benchmarks/forward.py

## bench-calibrated: issue 15's comparison with llm-compressor 0.14 (oneshot, sequential pipeline, CPU): GPTQ W4A16 /
## W4A16_ASYM (group 64) / NVFP4A16 / MXFP4A16 (swiftcompress with --refit ls and none, with and without --scale-search
## mse, --actorder static and none), SparseGPT and Wanda 2:4 (--refit ls and none) on the fixture Llama and BERT with the committed calibration tokens, scored on the
## held-out tokens by swiftcompress evaluate; wall time (best of 3) and peak RSS of each tool; then GPTQ W4A16 g128 on the
## generated ~100M Llama of bench-forward (16 samples x 128 random tokens) against the issue's RSS bound.
## Writes Benchmarks/results/calibrated.json and prints the tables of docs/calibrated.md (CAL_THREADS threads each, default 1).
## Needs the torch venv of `make interop`, into which llmcompressor is installed --no-deps with its small dependencies.
CALIBRATED_DIR := .build/bench-calibrated
CAL_THREADS ?= 1
bench-calibrated: build $(INTEROP_VENV)/.llmcompressor
	@test -f $(FORWARD_DIR)/llama-110m/model.safetensors || $(INTEROP_VENV)/bin/python Scripts/make_bench_model.py $(FORWARD_DIR)/llama-110m
	$(INTEROP_VENV)/bin/python Benchmarks/calibrated.py run --swiftcompress $(BIN) --out $(CALIBRATED_DIR) --threads $(CAL_THREADS) \
	  --large-model $(FORWARD_DIR)/llama-110m --json Benchmarks/results/calibrated.json
$(INTEROP_VENV)/.llmcompressor: $(INTEROP_VENV)/.installed
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps llmcompressor==0.14.0.1
	$(INTEROP_VENV)/bin/pip install --quiet --disable-pip-version-check psutil requests pillow loguru accelerate datasets
	@touch $@

## fixtures: regenerate Fixtures/ with the Python reference writer
fixtures: venv
	$(PY) Fixtures/generate.py

## fuzz: libFuzzer (+ASan) over the safetensors and index readers for FUZZ_SECONDS (300), seeded from Fuzz/corpus;
## new inputs go to .build-fuzz/corpus, crashes and hangs to .build-fuzz/artifacts, and any finding fails the target
FUZZ_SECONDS ?= 300
FUZZ_MAX_LEN ?= 8192
FUZZ_BUILD   := .build-fuzz
FUZZ_BIN     := $(FUZZ_BUILD)/release/SafeTensorsFuzz
FUZZ_CORPUS  := Fuzz/corpus/safetensors
FUZZ_OPTIONS := -dict=Fuzz/safetensors.dict -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=2048
## fuzz-build: build the libFuzzer target (Fuzz/, its own package) with -sanitize=fuzzer,address into .build-fuzz
fuzz-build:
	$(SWIFT) build -c release --package-path Fuzz --scratch-path $(FUZZ_BUILD) -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld
fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/corpus $(FUZZ_BUILD)/artifacts
	$(FUZZ_BIN) $(FUZZ_OPTIONS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_BUILD)/artifacts/ $(FUZZ_BUILD)/corpus $(FUZZ_CORPUS)

## fuzz-merge: minimise Fuzz/corpus plus what make fuzz found into Fuzz/corpus (libFuzzer -merge=1); commit the result
fuzz-merge: fuzz-build
	@rm -rf $(FUZZ_BUILD)/merged && mkdir -p $(FUZZ_BUILD)/merged
	$(FUZZ_BIN) $(FUZZ_OPTIONS) -merge=1 $(FUZZ_BUILD)/merged $(FUZZ_CORPUS) $(FUZZ_BUILD)/corpus
	rm -rf $(FUZZ_CORPUS) && mv $(FUZZ_BUILD)/merged $(FUZZ_CORPUS)

## lint: check formatting with the toolchain's swift-format
lint:
	$(SWIFT) format lint --strict --recursive --parallel Package.swift Sources Tests Benchmarks Fuzz/Package.swift Fuzz/SafeTensorsFuzz

## format: apply swift-format
format:
	$(SWIFT) format --in-place --recursive --parallel Package.swift Sources Tests Benchmarks Fuzz/Package.swift Fuzz/SafeTensorsFuzz

clean:
	rm -rf .build
