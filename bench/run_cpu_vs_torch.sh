#!/usr/bin/env bash
# tileflash's CPU kernels against PyTorch's CPU scaled_dot_product_attention, same
# shapes and threads: seq 1024 ... 8192, d = 64 and 128, fp32 and bf16, causal and
# not, batch 1, 16 heads, forward and backward. Where python3 has no torch, tileflash
# runs alone (a record of the CPU kernels on this machine).
# Writes bench/results/<cpu>-<date>-cpu-vs-torch.csv, or -cpu.csv without torch
# (copied to $OUT when set).
# Environment: THREADS (default: all cores), CPU_SEQ, CPU_REPS (default 3), CPU_WARMUP (default 1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$bench_root"

build_dir="${TILEFLASH_BUILD_DIR:-build-cpu-bench}"
bench_build "$build_dir" OFF -DTILEFLASH_NATIVE=ON
threads="${THREADS:-$(nproc)}"
device="$(bench_cpu_name)"
results="${RESULTS_DIR:-bench/results}"
mkdir -p "$results"
with_torch=0
python3 -c 'import torch' 2>/dev/null && with_torch=1
suffix=cpu
((with_torch)) && suffix=cpu-vs-torch
out="$results/$(bench_slug "$device")-$(date -u +%Y-%m-%d)-$suffix.csv"
scratch="$(mktemp -d)"
shape=(--dtype fp32,bf16 --head-dim 64,128 --heads 16 --batch 1 --seq "${CPU_SEQ:-1024,2048,4096,8192}"
       --causal both --direction fwd,bwd --threads "$threads" --reps "${CPU_REPS:-3}" --warmup "${CPU_WARMUP:-1}" --check 0)

status=0
"$build_dir/bench/tileflash-bench" --backends cpu "${shape[@]}" --csv "$scratch/tileflash.csv" || status=1
parts=("$scratch/tileflash.csv")
if ((with_torch)); then
  OMP_NUM_THREADS="$threads" python3 bench/torch_sdpa.py --backends torch-cpu "${shape[@]}" \
    --csv "$scratch/torch.csv" || status=1
  parts+=("$scratch/torch.csv")
fi
bench_merge "$out" "$device" "bench/run_cpu_vs_torch.sh (${shape[*]})" "${parts[@]}"
echo "cpu run: $out"
((with_torch)) && { python3 bench/summarize.py "$out" --baseline torch-cpu || true; }
bench_export "$out"
exit "$status"
