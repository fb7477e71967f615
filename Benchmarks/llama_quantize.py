#!/usr/bin/env python3
"""swiftcompress quantize against llama.cpp's llama-quantize, whole process, same weights.

usage: llama_quantize.py --swiftcompress BIN [--work .build/llama] [--repeats 3] [--mse]

Dev-only (`make bench-llama`, which `make bench` runs; never `make test`). Everything it
fetches or builds lives under --work, inside .build/ (never committed):
- the llama-cpp-python 0.3.36 sdist from PyPI (`pip download --no-binary :all: --no-deps`),
  whose vendor/llama.cpp is built with cmake, -DGGML_NATIVE=ON, target llama-quantize;
- llama.cpp's own gguf-py from that sdist, installed into this interpreter (run it from a
  venv of its own: the Makefile makes .build/llama/venv);
- the benchmark checkpoint, one Llama layer whose seven linear weights are all 4096x4096
  Student-t (df 4) with outlier channels (Scripts/make_bench_checkpoint.py
  --intermediate 4096: 470 MB in F32, largest tensor 67 MB), in F32 and BF16, and the
  same tensors written as GGUF by gguf-py (`llama` architecture, the same bytes).

For each round-to-nearest scheme and its llama.cpp type (W4A16 / Q4_0, W8A16 / Q8_0,
MXFP4A16 / MXFP4, NVFP4A16 / NVFP4) and each input dtype it times
`swiftcompress quantize IN OUT --scheme S` and `llama-quantize --pure IN.gguf OUT.gguf
TYPE 2` (2 threads), best of --repeats, dirty pages flushed (sync) before every run
outside the timing, and reads each child's peak RSS from wait4. Before the first run of
each dtype, both tools' inputs are evicted from the page cache and read back once with
plain sequential reads: the state a file is in after any ordinary read, the same for both
inputs. (Left as their writers leave them, the two inputs' page cache differs: Python's
safetensors and gguf-py write differently, and a file written in small pieces is cached
in small folios that cost both tools two to ten times more to map; see
docs/benchmarks.md, issue 17 item 19.) Ratios are taken within
this one run, with single-thread memcpy measured in it too, because the machine is
shared. Then the peak RSS of ours with the output on tmpfs, and (--mse) the time of
`--scale-search mse` against round-to-nearest.
"""
import argparse
import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import time

SDIST = "llama-cpp-python==0.3.36"
# Each scheme, llama.cpp's matching type and how llama-quantize is asked for it: MXFP4 is
# the MXFP4_MOE file type (every tensor MXFP4 with --pure); NVFP4 has no file type in its
# list, so every weight is overridden to the nvfp4 tensor type.
SCHEMES = [("W4A16", "Q4_0", ["Q4_0"]), ("W8A16", "Q8_0", ["Q8_0"]), ("MXFP4A16", "MXFP4", ["MXFP4_MOE"]),
           ("NVFP4A16", "NVFP4", ["--tensor-type", "weight=nvfp4", "Q4_0"])]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(message):
    print(message, file=sys.stderr, flush=True)


def llama_source(work):
    """The llama.cpp tree inside the sdist, downloaded and unpacked once."""
    found = glob.glob(os.path.join(work, "llama_cpp_python-*/vendor/llama.cpp"))
    if found:
        return found[0]
    os.makedirs(work, exist_ok=True)
    log(f"downloading the {SDIST} sdist")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                    SDIST, "-d", work], check=True)
    archive = glob.glob(os.path.join(work, "llama_cpp_python-*.tar.gz"))[0]
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return glob.glob(os.path.join(work, "llama_cpp_python-*/vendor/llama.cpp"))[0]


def llama_quantize(work, source):
    """llama-quantize, built once (release, native CPU features)."""
    build = os.path.join(work, "build")
    binary = os.path.join(build, "bin", "llama-quantize")
    if os.path.exists(binary):
        return binary
    log("building llama-quantize (cmake, -DGGML_NATIVE=ON; a few minutes)")
    subprocess.run(["cmake", "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                    "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "--target", "llama-quantize", "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)
    return binary


def ensure_python_packages(source):
    try:
        import gguf  # noqa: F401
        import ml_dtypes  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError:
        log("installing numpy, safetensors, ml_dtypes and the sdist's gguf-py into " + sys.prefix)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", os.path.join(ROOT, "Scripts", "requirements.txt"),
                        os.path.join(source, "gguf-py")], check=True)


def checkpoints(work):
    """The safetensors checkpoint and its GGUF twin, F32 and BF16, generated once (in child
    processes: a child's peak RSS counts its parent's at exec, so this one stays small)."""
    result = {}
    for dtype in ("f32", "bf16"):
        folder = os.path.join(work, "data", dtype)
        st = os.path.join(folder, "model.safetensors")
        if not os.path.exists(st):
            subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_bench_checkpoint.py"), folder,
                            "--dtype", dtype, "--intermediate", "4096"], check=True)
        path = os.path.join(work, "data", f"model-{dtype}.gguf")
        if not os.path.exists(path):
            subprocess.run([sys.executable, __file__, "--write-gguf", st, path], check=True)
        with open(st, "rb") as f:
            header = int.from_bytes(f.read(8), "little")
        tensor_bytes = os.path.getsize(st) - 8 - header
        result[dtype] = (folder, path, tensor_bytes)
    return result


def write_gguf(st, path):
    """The tensors of safetensors file `st` as a `llama` GGUF file, the same bytes."""
    import gguf
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, which safetensors needs for BF16)
    import numpy as np
    from safetensors.numpy import load_file

    log(f"writing {path} with gguf-py")
    tensors = load_file(st)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    writer = gguf.GGUFWriter(path + ".partial", "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(4096)
    writer.add_block_count(1)
    writer.add_feed_forward_length(4096)
    writer.add_head_count(32)
    writer.add_head_count_kv(32)
    writer.add_rope_dimension_count(128)
    writer.add_layer_norm_rms_eps(1e-5)
    bf16 = any(a.dtype != np.float32 and a.ndim == 2 for a in tensors.values())
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    for name, array in tensors.items():
        if name == "model.norm.weight":
            target = "output_norm.weight"
        else:
            module = name.removeprefix("model.layers.0.").removesuffix(".weight")
            target = f"blk.0.{names[module]}.weight"
        if array.dtype == np.float32:
            writer.add_tensor(target, array)
        else:  # BF16 as its raw 16-bit patterns, the same bytes
            raw = np.ascontiguousarray(array).view(np.uint16)
            writer.add_tensor(target, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.rename(path + ".partial", path)


def read_in(path):
    """Evicts `path` from the page cache (its pages are clean) and reads it back in order,
    so the kernel caches it as any file read once: in large folios where the file system
    uses them (ext4 on Linux 6.x), which a mapping then maps 2 MiB at a time."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 8 << 20):
            pass
    finally:
        os.close(fd)


def memcpy_bandwidth(size=256 << 20, repeats=7):
    """Best single-thread memcpy over warm buffers, in bytes/s."""
    source = ctypes.create_string_buffer(b"\x01" * 4096, size)
    target = ctypes.create_string_buffer(size)
    ctypes.memmove(target, source, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ctypes.memmove(target, source, size)
        best = min(best, time.perf_counter() - start)
    return size / best


def run(command, cleanup):
    """Wall time and peak RSS (bytes) of one child, dirty pages flushed first."""
    cleanup()
    os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    err = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(command)}\n{err[-2000:]}")
    return seconds, usage.ru_maxrss * 1024


def best(command, cleanup, repeats):
    runs = [run(command, cleanup) for _ in range(repeats)]
    return min(t for t, _ in runs), max(r for _, r in runs)


def remover(path):
    def cleanup():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    return cleanup


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--swiftcompress", help="the swiftcompress binary to time (required but for the helper modes)")
    parser.add_argument("--work", default=os.path.join(ROOT, ".build", "llama"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mse", action="store_true", help="also time --scale-search mse (slow)")
    parser.add_argument("--schemes", default=",".join(s for s, _, _ in SCHEMES))
    parser.add_argument("--write-gguf", nargs=2, metavar=("SAFETENSORS", "GGUF"), help=argparse.SUPPRESS)
    parser.add_argument("--memcpy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_gguf:
        return write_gguf(*args.write_gguf)
    if args.memcpy:
        return print(memcpy_bandwidth())
    if not args.swiftcompress:
        parser.error("the following arguments are required: --swiftcompress")
    work = os.path.abspath(args.work)
    source = llama_source(work)
    binary = llama_quantize(work, source)
    ensure_python_packages(source)
    inputs = checkpoints(work)
    ours_bin = os.path.abspath(args.swiftcompress)
    out_dir = os.path.join(work, "out")
    os.makedirs(out_dir, exist_ok=True)
    tmpfs = "/dev/shm/swiftcompress-bench-llama"
    chosen = [entry for entry in SCHEMES if entry[0] in args.schemes.split(",")]

    bandwidth = float(subprocess.run([sys.executable, __file__, "--swiftcompress", ours_bin, "--memcpy"], check=True,
                                     capture_output=True, text=True).stdout)
    largest = {"f32": 4096 * 4096 * 4, "bf16": 4096 * 4096 * 2}
    print(f"checkpoint: one Llama layer, seven 4096x4096 weights: F32 {inputs['f32'][2] / 1e6:.0f} MB, "
          f"BF16 {inputs['bf16'][2] / 1e6:.0f} MB; memcpy (1 thread, 256 MiB, best of 7) {bandwidth / 1e9:.1f} GB/s; "
          f"best of {args.repeats}, whole process, sync before each run, inputs read in once")
    print("| scheme vs llama.cpp type | input | ours | llama-quantize | ratio (goal >= 2) | ours GB/s of input "
          "| x memcpy (goal >= 0.5, F32) | peak RSS disk / tmpfs (goal <= 1.5 x largest + 32 MB) | llama RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    rtn = {}
    for dtype in ("f32", "bf16"):
        folder, gguf_path, tensor_bytes = inputs[dtype]
        bound = 1.5 * largest[dtype] + 32e6
        read_in(os.path.join(folder, "model.safetensors"))
        read_in(gguf_path)
        for scheme, ltype, llama_args in chosen:
            out = os.path.join(out_dir, "ours")
            ours, rss = best([ours_bin, "quantize", folder, out, "--scheme", scheme, "--quiet"], remover(out),
                             args.repeats)
            shm = os.path.join(tmpfs, "ours")
            os.makedirs(tmpfs, exist_ok=True)
            _, rss_tmpfs = best([ours_bin, "quantize", folder, shm, "--scheme", scheme, "--quiet"], remover(shm), 1)
            remover(tmpfs)()
            gguf_out = os.path.join(out_dir, "out.gguf")
            theirs, their_rss = best([binary, "--pure", *llama_args[:-1], gguf_path, gguf_out, llama_args[-1], "2"], remover(gguf_out),
                                     args.repeats)
            remover(gguf_out)()
            rate = tensor_bytes / ours
            ratio = theirs / ours
            rtn[(dtype, scheme)] = ours
            ok = "ok" if max(rss, rss_tmpfs) <= bound else "OVER"
            print(f"| {scheme} vs {ltype} | {dtype.upper()} | {ours:.3f} s | {theirs:.3f} s | "
                  f"**{ratio:.2f}x** | {rate / 1e9:.2f} | {rate / bandwidth:.2f} | "
                  f"{rss / 2**20:.0f} / {rss_tmpfs / 2**20:.0f} MiB of {bound / 2**20:.0f} ({ok}) | "
                  f"{their_rss / 2**20:.0f} MiB |", flush=True)
    if args.mse:
        print("\n| scheme | input | mse | round-to-nearest | mse / RTN | peak RSS |")
        print("|---|---|---|---|---|---|")
        for dtype in ("f32", "bf16"):
            folder = inputs[dtype][0]
            for scheme, _, _ in chosen:
                out = os.path.join(out_dir, "ours-mse")
                t, rss = best([ours_bin, "quantize", folder, out, "--scheme", scheme, "--scale-search", "mse",
                               "--quiet"], remover(out), 1)
                remover(out)()
                print(f"| {scheme} | {dtype.upper()} | {t:.2f} s | {rtn[(dtype, scheme)]:.3f} s | "
                      f"{t / rtn[(dtype, scheme)]:.1f}x | {rss / 2**20:.0f} MiB |", flush=True)
    remover(os.path.join(out_dir, "ours"))()


if __name__ == "__main__":
    main()
