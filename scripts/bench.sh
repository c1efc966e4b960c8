#!/usr/bin/env bash
# Install dependencies, build tileflash and run the attention benchmark on the best
# backend here: the GPU when nvidia-smi finds one (tileflash `cuda` against cuDNN's
# fused attention and materialised standard attention on cuBLAS), else the CPU
# (tileflash `cpu` against the materialised `reference`). Prints the results and a
# comparison with standard attention; the CSV lands in the build folder.
#
# Environment (optional): TILEFLASH_BUILD_DIR (default build-bench), TILEFLASH_JOBS,
# TILEFLASH_CUDA_ARCHS (default: the local GPU's), TILEFLASH_HEAD_DIMS, BENCH_ARGS
# (extra tileflash-bench options, e.g. "--seq 4096 --reps 20").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh" bench

build_dir="${TILEFLASH_BUILD_DIR:-build-bench}"
jobs="${TILEFLASH_JOBS:-$(nproc)}"
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then gpu=1; fi

config=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEFLASH_BUILD_TESTS=OFF -DTILEFLASH_NATIVE=ON)
if ((gpu)); then config+=(-DTILEFLASH_CUDA=ON); else config+=(-DTILEFLASH_CUDA=OFF); fi
if ((gpu)) && [[ -z "${TILEFLASH_CUDA_ARCHS:-}" ]]; then
  # Compile for the GPU that will run the benchmark only ("9.0" -> 90): a fraction of the full build.
  TILEFLASH_CUDA_ARCHS="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')"
fi
[[ -n "${TILEFLASH_CUDA_ARCHS:-}" ]] && config+=(-DTILEFLASH_CUDA_ARCHS="$TILEFLASH_CUDA_ARCHS")
[[ -n "${TILEFLASH_HEAD_DIMS:-}" ]] && config+=(-DTILEFLASH_HEAD_DIMS="$TILEFLASH_HEAD_DIMS")
cmake -S . -B "$build_dir" "${config[@]}"
cmake --build "$build_dir" --parallel "$jobs" --target tileflash-bench

bench="$build_dir/bench/tileflash-bench"

read -r -a extra <<<"${BENCH_ARGS:-}"
if ((gpu)); then
  backends="cuda,cublas-standard"
  baselines=(--baseline cublas-standard)
  if "$bench" --backends cudnn --seq 128 --reps 1 --warmup 0 --check 0 >/dev/null 2>&1; then
    backends="cuda,cudnn,cublas-standard"
    baselines+=(--baseline cudnn)
  fi
  csv="$build_dir/bench-gpu.csv"
  # The grid of ../shared/ANCHORS.md at d = 128: batch * seq = 16384 tokens, hidden 2048.
  "$bench" --backends "$backends" --dtype bf16 --head-dim 128 --hidden 2048 --tokens 16384 \
    --seq 1024,2048,4096,8192,16384 --causal both --direction fwd,bwd --reps 20 --warmup 5 \
    --csv "$csv" "${extra[@]}" || echo "bench: some measurements failed or disagreed (see above)" >&2
else
  backends="cpu,reference"
  baselines=(--baseline reference)
  csv="$build_dir/bench-cpu.csv"
  "$bench" --backends "$backends" --dtype fp32 --head-dim 64 --heads 8 --batch 1 \
    --seq 256,512,1024,2048 --causal 0 --direction fwd,bwd --reps 3 --warmup 1 \
    --csv "$csv" "${extra[@]}" || echo "bench: some measurements failed or disagreed (see above)" >&2
fi

echo
echo "Compared with standard (materialised) attention:"
python3 bench/summarize.py "$csv" "${baselines[@]}"
echo "bench: results in $csv"
